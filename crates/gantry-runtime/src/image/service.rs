//! The store as CRI's `ImageService`: blocking work runs on tokio's blocking pool.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::ImageError;
use super::store::ImageStore;
use crate::cri::{self, FilesystemUsage, PullProgress, RegistryAuth};

impl ImageStore {
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(ImageStore) -> Result<T, ImageError> + Send + 'static,
    ) -> Result<T, ImageError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(store)).await.map_err(ImageError::Task)?
    }
}

#[async_trait]
impl cri::ImageService for ImageStore {
    async fn list_images(&self) -> Result<Vec<cri::Image>, ImageError> {
        self.blocking(|store| store.list()).await
    }

    async fn image_status(&self, reference: &str) -> Result<Option<cri::Image>, ImageError> {
        let reference = reference.to_string();
        self.blocking(move |store| store.resolve(&reference)).await
    }

    async fn pull_image(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: Option<mpsc::UnboundedSender<PullProgress>>,
    ) -> Result<String, ImageError> {
        Ok(self.pull(reference, auth, progress).await?.id)
    }

    /// As CRI's RemoveImage: the image the reference resolves to goes with all its references; an image that is
    /// not present is not an error.
    async fn remove_image(&self, reference: &str) -> Result<(), ImageError> {
        let reference = reference.to_string();
        self.blocking(move |store| {
            if let Some(image) = store.resolve(&reference)? {
                match store.remove(&image.id) {
                    Ok(_) | Err(ImageError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await
    }

    async fn image_fs_usage(&self) -> Result<FilesystemUsage, ImageError> {
        self.blocking(|store| store.usage()).await
    }
}
