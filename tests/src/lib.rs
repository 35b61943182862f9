//! Shared helpers for the root-only tests.
