//! Listings: a repository's tags and a registry's repositories (the catalog), followed
//! page by page through the `Link` header, as the bot's reconcile reads them.

use reqwest::header::LINK;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::control::Control;
use crate::model::{ImageLocation, ImageRef};
use crate::transport::TransportError;

use super::challenge::pull;
use super::client::{Call, Client};
use super::RegistryPool;

/// The most entries asked for per page, and the most pages followed.
const PAGE: usize = 1000;
const MAX_PAGES: usize = 1000;

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

impl Client {
    /// Follows a paginated listing from `first`, reading each page with `page`.
    fn pages(
        &self,
        call: &Call,
        scope: &str,
        first: Url,
        what: &str,
        mut page: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), TransportError> {
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                break;
            }
            let (body, link) = self.retrying(call, || {
                let response = self.send(call, &[scope.to_string()], &mut || {
                    Ok(self.http.get(url.clone()))
                })?;
                let response = self.check_transient(call, what, response)?;
                if response.status() != StatusCode::OK {
                    return Err(super::retry::Attempt::Fail(
                        self.status_error(call, what, response),
                    ));
                }
                let link = super::header_str(response.headers(), LINK.as_str());
                let body = self.read_body(call, response, 16 << 20)?;
                Ok((body, link))
            })?;
            page(&body).map_err(|message| TransportError::Registry {
                location: call.location.to_string(),
                message: format!("a {what} that does not parse: {message}"),
            })?;
            next = link.and_then(|l| next_page(&url, &l));
        }
        Ok(())
    }
}

/// The `rel="next"` target of a `Link` header, resolved against the page's URL.
fn next_page(base: &Url, link: &str) -> Option<Url> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        base.join(target).ok()
    })
}

fn call_for(image: &ImageRef, control: &Control) -> Call {
    Call {
        location: ImageLocation::Registry(image.clone()),
        control: control.clone(),
    }
}

/// The tags of `registry/repository`, in the registry's order.
pub fn tags(
    pool: &RegistryPool,
    registry: &str,
    repository: &str,
    control: &Control,
) -> Result<Vec<String>, TransportError> {
    let image = ImageRef::parse(&format!("{registry}/{repository}")).map_err(|e| {
        TransportError::Registry {
            location: format!("{registry}/{repository}"),
            message: e.to_string(),
        }
    })?;
    let call = call_for(&image, control);
    let client = pool.client(registry, repository, image.is_loopback(), &call)?;
    let first = client.url(&format!("v2/{repository}/tags/list?n={PAGE}"));
    let mut all = Vec::new();
    client.pages(&call, &pull(repository), first, "tag list", |body| {
        let page: Tags = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        all.extend(page.tags.unwrap_or_default());
        Ok(())
    })?;
    Ok(all)
}

/// The repositories of `registry` (its catalog; registries may restrict it).
pub fn repositories(
    pool: &RegistryPool,
    registry: &str,
    control: &Control,
) -> Result<Vec<String>, TransportError> {
    let image =
        ImageRef::parse(&format!("{registry}/catalog")).map_err(|e| TransportError::Registry {
            location: registry.to_string(),
            message: e.to_string(),
        })?;
    let call = call_for(&image, control);
    let client = pool.client(registry, "", image.is_loopback(), &call)?;
    let first = client.url(&format!("v2/_catalog?n={PAGE}"));
    let mut all = Vec::new();
    client.pages(&call, "registry:catalog:*", first, "catalog", |body| {
        let page: Catalog = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        all.extend(page.repositories);
        Ok(())
    })?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let base = Url::parse("http://r.example:5000/v2/a/tags/list?n=2").unwrap();
        assert_eq!(
            next_page(&base, "</v2/a/tags/list?n=2&last=b>; rel=\"next\"")
                .unwrap()
                .as_str(),
            "http://r.example:5000/v2/a/tags/list?n=2&last=b"
        );
        assert_eq!(
            next_page(&base, "</v2/a/tags/list?last=b>; rel=\"prev\""),
            None
        );
    }
}
