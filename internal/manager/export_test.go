package manager

// RemoteUpstream exposes remoteUpstream to the external tests.
var RemoteUpstream = (*Manager).remoteUpstream

// RemoteCheck exposes remoteCheck to the external tests.
var RemoteCheck = (*Manager).remoteCheck
