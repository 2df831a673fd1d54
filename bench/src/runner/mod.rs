//! The peer and scaling runner (in progress).
