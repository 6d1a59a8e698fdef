package manager

// RemoteUpstream exposes remoteUpstream to the external tests.
var RemoteUpstream = (*Manager).remoteUpstream
