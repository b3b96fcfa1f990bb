//! The content-addressed image store.

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image with this reference or ID.
    #[error("image {0} not found")]
    NotFound(String),
}
