// Package health runs one instance health check — an HTTP GET or a TCP
// connect — as a blueprint manifest's [health] table describes it.
//
// It is deliberately tiny and free of provider knowledge: a provider turns a
// manifest into a Spec with FromManifest (or builds one itself for an address
// reached through a tunnel) and calls Check on whatever schedule it likes.
package health
