//! Integration tests live in `it/`; this library target is empty.
