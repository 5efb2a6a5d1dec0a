//! What a registry bot asks of a session besides conversions: the digest a tag names now,
//! whether a destination holds the converted twin of a source already (the registry as
//! the record: the twin's manifest carries the source digest and the recipe set), and a
//! registry's repositories and tags.

use crate::error::Error;
use crate::model::{Digest, ImageLocation, ImageRef};
use crate::transport::registry::listing;
use crate::transport::TransportError;
use crate::write::image::{BASE_DIGEST, RECIPES_DIGEST};

use super::Session;

impl Session {
    /// The digest `image` names now: its own when it is pinned, else its tag's manifest's.
    pub fn digest_of(&self, image: &ImageRef) -> Result<Digest, Error> {
        if let Some(digest) = image.digest() {
            return Ok(digest.clone());
        }
        Ok(self
            .open_source(&ImageLocation::Registry(image.clone()))?
            .manifest()?
            .digest)
    }

    /// The digest at `destination` when it is the conversion of `source` with `recipes`;
    /// `None` when there is nothing there, or something else.
    pub fn twin_at(
        &self,
        destination: &ImageLocation,
        source: &Digest,
        recipes: &Digest,
    ) -> Result<Option<Digest>, Error> {
        let raw = match self.open_source(destination)?.manifest() {
            Ok(raw) => raw,
            Err(TransportError::NotFound { .. } | TransportError::NoSuchTag { .. }) => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let value: serde_json::Value = serde_json::from_slice(&raw.bytes).unwrap_or_default();
        let annotation = |name: &str| value["annotations"][name].as_str().map(str::to_string);
        let same = annotation(BASE_DIGEST) == Some(source.to_string())
            && annotation(RECIPES_DIGEST) == Some(recipes.to_string());
        Ok(same.then_some(raw.digest))
    }

    /// The repositories of `registry` (its catalog; registries may restrict it).
    pub fn repositories(&self, registry: &str) -> Result<Vec<String>, Error> {
        Ok(listing::repositories(
            self.registries(),
            registry,
            self.control(),
        )?)
    }

    /// The tags of `registry/repository`, in the registry's order.
    pub fn tags(&self, registry: &str, repository: &str) -> Result<Vec<String>, Error> {
        Ok(listing::tags(
            self.registries(),
            registry,
            repository,
            self.control(),
        )?)
    }
}
