// Package cost prices what bpm runs: a price catalog compiled into the
// binary (catalog/, copied from the shared pricing research by
// `go generate`), operator rate cards from [remote.NAME.pricing], an
// estimator that ranks the ways a package could be priced on a remote, a
// meter that turns the intervals an instance actually ran into month-to-date
// cost and a forecast, and budgets whose threshold crossings become log
// lines, webhooks and deploy refusals.
//
// The estimator and the meter's summary are pure functions of their inputs
// (rows and an injected time), so tests drive a simulated month without
// sleeping; only Budgets touches state, through the meta table, because a
// threshold crossing must be claimed atomically to be raised exactly once.
package cost

//go:generate sh catalog/refresh.sh
