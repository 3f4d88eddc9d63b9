//! Harness for end-to-end tests over the real `palisade-agent` and
//! `palisade-collector` binaries: a temporary directory per test, a scrubbed
//! environment, and a dump of the command and its output on failure.
