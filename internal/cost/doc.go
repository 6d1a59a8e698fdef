// Package cost prices what bpm runs: a price catalog compiled into the
// binary (catalog/, copied from the shared pricing research by
// `go generate`), operator rate cards from [remote.NAME.pricing], an
// estimator that ranks the ways a package could be priced on a remote, a
// meter that turns the intervals an instance actually ran into month-to-date
// cost and a forecast, and budgets whose threshold crossings become log
// lines, webhooks and deploy refusals.
//
// The package does no state I/O of its own: the manager feeds it rows from
// the state database and persists what it decides, so every rule here is a
// pure function that tests drive with an injected clock.
package cost

//go:generate sh catalog/refresh.sh
