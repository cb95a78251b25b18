//! V4L2 (placeholder while the backend is written).
