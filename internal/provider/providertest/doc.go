// Package providertest is the one behavioural contract every provider must
// meet, run against the provider's real target: deploy (idempotent), status,
// terminate (idempotent), logs, listing for reconcile, resources and cost.
//
// A provider's own test calls Run with a Harness that supplies the provider
// and a test package — a small HTTP service with a health check — and the
// suite deploys real instances and cleans every one up, even on failure.
package providertest
