//! Requests: what to read, how to plan its conversion and where to write it, built from
//! the words a front end was given (a command line, a server's rules), every value
//! checked before any work starts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::model::ports::PortMap;
use crate::model::{ImageLocation, Platform};
use crate::plan::generic;
use crate::recipe::{Recipe, Selection};

/// The prefix of the history entry a conversion writes; finding it means the image was
/// converted already.
pub const CREATED_BY: &str = "unroot convert";

/// The tag suffix of default destinations.
pub const SUFFIX: &str = "-unprivileged";

/// How to plan a conversion, as a front end was told: shared by `analyze` and `convert`.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// The runtime user id; `None`: the image's own non-root user, else 65532.
    pub uid: Option<u64>,
    /// The runtime group id; `None`: the user's primary group, else the UID.
    pub gid: Option<u64>,
    /// Port moves, `FROM:TO` each.
    pub ports: Vec<String>,
    /// Recipes to use whatever the image holds: built-in names or recipe files.
    pub recipes: Vec<String>,
    /// Use no built-in recipe.
    pub no_recipes: bool,
    /// The platform to read from an index (`os/arch[/variant]`); `None`: every one.
    pub platform: Option<String>,
}

/// What a conversion should do beyond the plan.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// Where to write; `None`: next to the source, tagged `<tag>-unprivileged`.
    pub destination: Option<String>,
    /// `SOURCE_DATE_EPOCH`, for the times of the new config, history entry and files.
    pub source_date_epoch: Option<i64>,
    /// Rewrite the layers that hold owners above 65535.
    pub remap_ids: bool,
    /// Plan and report only: write nothing.
    pub dry_run: bool,
    /// Allow the destination to be the source itself (its tag, or its archive file).
    pub replace: bool,
    /// Run the converted image before writing it, and write nothing if it fails.
    pub verify: Option<super::VerifyOptions>,
    /// Learn what the image needs by running it, convert it with what was learned, and
    /// write it only when the result served.
    pub learn: Option<super::LearnOptions>,
}

/// What to read and how to plan its conversion.
#[derive(Clone, Debug)]
pub struct ImageRequest {
    /// The image to read.
    pub source: ImageLocation,
    /// The platform to pick from an index; `None`: every platform.
    pub platform: Option<Platform>,
    /// `--uid`, `--gid`, the port map.
    pub generic: generic::Options,
    /// The recipes to use.
    pub recipes: Selection,
}

/// The highest user or group id unroot writes: tar headers, `/etc/passwd` and runtimes
/// agree on 31 bits (GNU tar and the kernel treat larger ones as errors or as -1).
pub const MAX_ID: u64 = (1 << 31) - 1;

/// A request that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `--uid 0`.
    #[error(
        "the runtime user must not be root: `--uid 0` is refused (group 0, `--gid 0`, is allowed)"
    )]
    RootUser,
    /// The destination is the source itself.
    #[error(
        "{location} is the source itself: converting it there would replace the original image"
    )]
    OverwritesSource {
        /// The location.
        location: String,
    },
    /// An id beyond what tar headers and runtimes agree on.
    #[error("`--{flag} {value}` is out of range: ids go from {min} to {MAX_ID}")]
    IdOutOfRange {
        /// `uid` or `gid`.
        flag: &'static str,
        /// The value given.
        value: u64,
        /// The lowest id allowed.
        min: u64,
    },
}

/// Checks `--uid` and `--gid`.
fn check_ids(options: &PlanOptions) -> Result<(), RequestError> {
    if options.uid == Some(0) {
        return Err(RequestError::RootUser);
    }
    for (flag, value, min) in [("uid", options.uid, 1), ("gid", options.gid, 0)] {
        if let Some(value) = value.filter(|v| *v > MAX_ID) {
            return Err(RequestError::IdOutOfRange { flag, value, min });
        }
    }
    Ok(())
}

impl ImageRequest {
    /// Checks and parses what a front end was given: the location, the platform, the
    /// runtime ids, the port map, and the recipes (loading recipe files).
    pub fn new(source: &str, options: &PlanOptions) -> Result<ImageRequest, Error> {
        ImageRequest::of(ImageLocation::parse(source)?, options)
    }

    /// As [`ImageRequest::new`], for a location a front end holds already.
    pub fn of(source: ImageLocation, options: &PlanOptions) -> Result<ImageRequest, Error> {
        check_ids(options)?;
        Ok(ImageRequest {
            source,
            platform: options
                .platform
                .as_deref()
                .map(Platform::parse)
                .transpose()?,
            generic: generic::Options {
                uid: options.uid,
                gid: options.gid,
                ports: PortMap::new(&options.ports)?,
                ..Default::default()
            },
            recipes: Selection::new(
                options.no_recipes,
                options
                    .recipes
                    .iter()
                    .map(|r| Recipe::load(r))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// What to convert, where to, and how.
#[derive(Clone, Debug)]
pub struct ConvertRequest {
    /// The image and how to plan.
    pub image: ImageRequest,
    /// Where to write.
    pub destination: ImageLocation,
    /// `SOURCE_DATE_EPOCH`, for the times of the new config, history entry and files.
    pub source_date_epoch: Option<i64>,
    /// The `created_by` of the history entry: the command, with the options that shape
    /// the result.
    pub created_by: String,
    /// Plan and report only: write nothing.
    pub dry_run: bool,
    /// Rewrite the layers that hold owners above 65535.
    pub remap_ids: bool,
    /// Run the converted image before writing it, and write nothing if it fails.
    pub verify: Option<super::VerifyOptions>,
    /// Learn by running it first (see [`super::Session::learn`]).
    pub learn: Option<super::LearnOptions>,
    /// Whether the destination was asked for (`--to`) rather than derived: a source that
    /// is converted already is then copied there unchanged, so that the next step of a
    /// pipeline finds an image where it was told to look.
    pub explicit_destination: bool,
}

impl ConvertRequest {
    /// Checks and parses what a front end was given; the destination defaults to the
    /// source's location with the tag `<tag>-unprivileged`.
    pub fn new(
        source: &str,
        plan: &PlanOptions,
        options: &ConvertOptions,
    ) -> Result<ConvertRequest, Error> {
        let image = ImageRequest::new(source, plan)?;
        match options.destination.as_deref() {
            Some(d) => ConvertRequest::to(image, ImageLocation::parse(d)?, plan, options),
            None => {
                let destination = default_destination(&image.source)?;
                ConvertRequest::checked(image, destination, false, plan, options)
            }
        }
    }

    /// The conversion of `image` to the `destination` a front end holds already (as if
    /// given with `--to`; `options.destination` is not read).
    pub fn to(
        image: ImageRequest,
        destination: ImageLocation,
        plan: &PlanOptions,
        options: &ConvertOptions,
    ) -> Result<ConvertRequest, Error> {
        ConvertRequest::checked(image, destination, true, plan, options)
    }

    fn checked(
        image: ImageRequest,
        destination: ImageLocation,
        explicit_destination: bool,
        plan: &PlanOptions,
        options: &ConvertOptions,
    ) -> Result<ConvertRequest, Error> {
        // A docker archive `--to` names no image for is named once the source is open
        // (see `named_destination`).
        if !options.replace && !options.dry_run && overwrites(&image.source, &destination) {
            return Err(RequestError::OverwritesSource {
                location: destination.to_string(),
            }
            .into());
        }
        Ok(ConvertRequest {
            image,
            destination,
            source_date_epoch: options.source_date_epoch,
            created_by: created_by(plan, options),
            dry_run: options.dry_run,
            remap_ids: options.remap_ids,
            verify: options.verify.clone(),
            learn: options.learn.clone(),
            explicit_destination,
        })
    }
}

/// Whether writing `destination` replaces `source`: the same registry tag, the same tag of
/// the same layout, or the same archive file (an archive is written anew, whole).
fn overwrites(source: &ImageLocation, destination: &ImageLocation) -> bool {
    let same_file = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    match (source, destination) {
        (ImageLocation::Registry(s), ImageLocation::Registry(d)) => {
            let tag = |r: &crate::model::ImageRef| match (r.tag(), r.digest()) {
                (Some(t), _) => Some(t.to_string()),
                (None, None) => Some("latest".to_string()),
                (None, Some(_)) => None,
            };
            s.registry() == d.registry()
                && s.repository() == d.repository()
                && tag(s).is_some()
                && tag(s) == tag(d)
        }
        (
            ImageLocation::OciLayout { dir: a, tag: ta },
            ImageLocation::OciLayout { dir: b, tag: tb },
        ) => {
            same_file(a, b)
                && (ta.is_none() || ta.as_deref() == Some(tb.as_deref().unwrap_or("latest")))
        }
        (
            ImageLocation::OciArchive { file: a, .. }
            | ImageLocation::DockerArchive { file: a, .. },
            ImageLocation::OciArchive { file: b, .. }
            | ImageLocation::DockerArchive { file: b, .. },
        ) => same_file(a, b),
        _ => false,
    }
}

/// The history entry's `created_by`: the command and the options that change the output
/// (in a fixed order, so the same conversion gives the same digest).
fn created_by(plan: &PlanOptions, options: &ConvertOptions) -> String {
    let mut out = String::from(CREATED_BY);
    if let Some(uid) = plan.uid {
        let _ = write!(out, " --uid {uid}");
    }
    if let Some(gid) = plan.gid {
        let _ = write!(out, " --gid {gid}");
    }
    if options.remap_ids {
        out.push_str(" --remap-ids");
    }
    let mut ports = plan.ports.clone();
    ports.sort();
    for p in ports {
        let _ = write!(out, " --port {p}");
    }
    out
}

/// The name a docker archive gets when none is given: the source's, with `suffix` on its
/// tag (`registry.example/app:1.4-unprivileged`; for local sources, the name of the file
/// or directory, or of the one that holds a directory named `image`, `oci` and the like:
/// `nginx:latest-unprivileged` for `oci:nginx/image`).
pub fn archive_name(source: &ImageLocation, suffix: &str) -> String {
    let tag = |t: Option<&str>| format!("{}{suffix}", t.unwrap_or("latest"));
    let local = |path: &Path| {
        let path = path.to_string_lossy();
        let base = crate::model::location::naming_part(&path);
        let stem = Path::new(base)
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let name: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let name = name
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_string();
        if name.is_empty() {
            "image".to_string()
        } else {
            name
        }
    };
    match source {
        ImageLocation::Registry(r) => {
            format!("{}/{}:{}", r.registry(), r.repository(), tag(r.tag()))
        }
        ImageLocation::OciLayout { dir, tag: t } => format!("{}:{}", local(dir), tag(t.as_deref())),
        ImageLocation::OciArchive { file, tag: t } => {
            format!("{}:{}", local(file), tag(t.as_deref()))
        }
        ImageLocation::DockerArchive { file, reference } => match reference {
            Some(r) if !r.starts_with('@') => with_suffix(r, suffix),
            _ => format!("{}:{}", local(file), tag(None)),
        },
    }
}

/// `repo:tag` with `suffix` on the tag (`latest` when it has none).
fn with_suffix(reference: &str, suffix: &str) -> String {
    match reference.rsplit_once(':') {
        Some((repo, t)) if !t.contains('/') => format!("{repo}:{t}{suffix}"),
        _ => format!("{reference}:latest{suffix}"),
    }
}

/// The name of an open source for a docker archive: the one a docker archive source
/// records for the image it read (read by `@N` or as its only image, too), with `suffix`
/// on its tag; else [`archive_name`] of its location.
pub fn archive_name_of(source: &dyn crate::transport::Source, suffix: &str) -> String {
    let recorded = match source.location() {
        ImageLocation::DockerArchive { .. } => source.recorded_name(),
        _ => None,
    };
    match recorded {
        Some(name) => with_suffix(&name, suffix),
        None => archive_name(source.location(), suffix),
    }
}

/// `docker load` of an archive without `RepoTags` gives a dangling image: a docker archive
/// destination that names no image is named after the open source (see
/// [`archive_name_of`]), with `suffix` on its tag; other destinations as they are.
pub fn named_destination(
    destination: &ImageLocation,
    source: &dyn crate::transport::Source,
    suffix: &str,
) -> ImageLocation {
    match destination {
        ImageLocation::DockerArchive {
            file,
            reference: None,
        } => ImageLocation::DockerArchive {
            file: file.clone(),
            reference: Some(archive_name_of(source, suffix)),
        },
        other => other.clone(),
    }
}

/// The default destination: the same place with the tag `<tag>-unprivileged`; for
/// archives, a sibling file `NAME-unprivileged.tar`.
pub fn default_destination(source: &ImageLocation) -> Result<ImageLocation, Error> {
    let tagged = |t: &Option<String>| Some(format!("{}{SUFFIX}", t.as_deref().unwrap_or("latest")));
    let sibling = |file: &Path| -> PathBuf {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match file.extension() {
            Some(ext) => format!("{stem}{SUFFIX}.{}", ext.to_string_lossy()),
            None => format!("{stem}{SUFFIX}"),
        };
        file.with_file_name(name)
    };
    Ok(match source {
        ImageLocation::Registry(r) => match r.tag() {
            Some(t) => ImageLocation::Registry(r.with_tag(&format!("{t}{SUFFIX}"))),
            None => {
                return Err(Error::NoDestination {
                    source_location: source.to_string(),
                    reason: "it is named by digest only, so there is no tag to derive one from"
                        .into(),
                })
            }
        },
        ImageLocation::OciLayout { dir, tag } => ImageLocation::OciLayout {
            dir: dir.clone(),
            tag: tagged(tag),
        },
        ImageLocation::OciArchive { file, tag } => ImageLocation::OciArchive {
            file: sibling(file),
            tag: tag.clone(),
        },
        ImageLocation::DockerArchive { file, reference } => ImageLocation::DockerArchive {
            file: sibling(file),
            // `@N` names no image: the name comes from the archive once it is open.
            reference: reference
                .as_ref()
                .filter(|r| !r.starts_with('@'))
                .map(|r| with_suffix(r, SUFFIX)),
        },
    })
}

/// The `created` time of the output (RFC 3339) and the same instant in seconds, for file
/// times: `SOURCE_DATE_EPOCH` when set, else the source's own `created`, else the epoch.
pub fn created_time(source_date_epoch: Option<i64>, source_created: Option<&str>) -> (String, u64) {
    use chrono::{DateTime, SecondsFormat, Utc};
    if let Some(secs) = source_date_epoch {
        if let Some(t) = DateTime::<Utc>::from_timestamp(secs, 0) {
            return (
                t.to_rfc3339_opts(SecondsFormat::Secs, true),
                secs.max(0) as u64,
            );
        }
    }
    if let Some(created) = source_created {
        if let Ok(t) = DateTime::parse_from_rfc3339(created) {
            return (created.to_string(), t.timestamp().max(0) as u64);
        }
    }
    ("1970-01-01T00:00:00Z".to_string(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_destinations() {
        let d =
            |s: &str| default_destination(&ImageLocation::parse(s).unwrap()).map(|l| l.to_string());
        assert_eq!(
            d("nginx").unwrap(),
            "docker://docker.io/library/nginx:latest-unprivileged"
        );
        assert_eq!(
            d("localhost:5000/a:1.2").unwrap(),
            "docker://localhost:5000/a:1.2-unprivileged"
        );
        assert_eq!(d("oci:dir:v1").unwrap(), "oci:dir:v1-unprivileged");
        assert_eq!(d("oci:dir").unwrap(), "oci:dir:latest-unprivileged");
        assert_eq!(
            d("oci-archive:/x/a.tar:v1").unwrap(),
            "oci-archive:/x/a-unprivileged.tar:v1"
        );
        assert_eq!(
            d("docker-archive:a.tar:app:1").unwrap(),
            "docker-archive:a-unprivileged.tar:app:1-unprivileged"
        );
        let pinned = format!("nginx@sha256:{}", "0".repeat(64));
        assert!(matches!(d(&pinned), Err(Error::NoDestination { .. })));
    }

    #[test]
    fn created_times() {
        assert_eq!(
            created_time(Some(86400), Some("2024-01-01T00:00:00Z")),
            ("1970-01-02T00:00:00Z".into(), 86400)
        );
        assert_eq!(
            created_time(None, Some("2024-01-01T00:00:00.5Z")).1,
            1704067200
        );
        assert_eq!(
            created_time(None, Some("garbage")),
            ("1970-01-01T00:00:00Z".into(), 0)
        );
    }

    #[test]
    fn writing_over_the_source_needs_replace() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("l");
        std::fs::create_dir(&layout).unwrap();
        let spelled_otherwise = format!("{}/../l", layout.display());
        let cases = [
            ("oci:{L}:latest", "oci:{L}:latest", true),
            ("oci:{L}:v1", "oci:{O}:v1", true),
            ("oci:{L}:v1", "oci:{L}:v1-unprivileged", false),
            ("oci:{L}", "oci:{L}", true),
            ("oci-archive:{L}.tar:a", "docker-archive:{L}.tar:b", true),
            ("registry.example/app:1", "registry.example/app:1", true),
            ("registry.example/app", "registry.example/app:latest", true),
            ("registry.example/app:1", "registry.example/other:1", false),
        ];
        for (src, dst, refused) in cases {
            let fill = |s: &str| {
                s.replace("{L}", &layout.display().to_string())
                    .replace("{O}", &spelled_otherwise)
            };
            let options = |replace| ConvertOptions {
                destination: Some(fill(dst)),
                replace,
                ..Default::default()
            };
            let result = ConvertRequest::new(&fill(src), &PlanOptions::default(), &options(false));
            assert_eq!(
                matches!(
                    result,
                    Err(Error::Request(RequestError::OverwritesSource { .. }))
                ),
                refused,
                "{src} -> {dst}"
            );
            assert!(
                ConvertRequest::new(&fill(src), &PlanOptions::default(), &options(true)).is_ok()
            );
        }
    }

    #[test]
    fn requests_check_every_value_and_name_what_shapes_the_output() {
        let plan = PlanOptions {
            uid: Some(1001),
            ports: vec!["443:9443".into(), "80:9090".into()],
            ..Default::default()
        };
        let request = ConvertRequest::new(
            "oci:/l:v1",
            &plan,
            &ConvertOptions {
                remap_ids: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(request.destination.to_string(), "oci:/l:v1-unprivileged");
        assert_eq!(
            request.created_by,
            "unroot convert --uid 1001 --remap-ids --port 443:9443 --port 80:9090"
        );
        assert_eq!(request.image.generic.ports.map(80), Some(9090));
        let bad = |plan: PlanOptions| ImageRequest::new("oci:/l", &plan).unwrap_err();
        assert!(matches!(
            bad(PlanOptions {
                ports: vec!["80".into()],
                ..Default::default()
            }),
            Error::Port(_)
        ));
        assert!(matches!(
            bad(PlanOptions {
                platform: Some("linux/".into()),
                ..Default::default()
            }),
            Error::Platform(_)
        ));
        assert!(matches!(
            bad(PlanOptions {
                recipes: vec!["no-such-recipe".into()],
                ..Default::default()
            }),
            Error::Recipe(_)
        ));
        let ids = |uid: Option<u64>, gid: Option<u64>| {
            ImageRequest::new(
                "oci:/l",
                &PlanOptions {
                    uid,
                    gid,
                    ..Default::default()
                },
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            ids(Some(0), None).unwrap_err(),
            "the runtime user must not be root: `--uid 0` is refused (group 0, `--gid 0`, is allowed)"
        );
        assert_eq!(
            ids(Some(4294967295), None).unwrap_err(),
            "`--uid 4294967295` is out of range: ids go from 1 to 2147483647"
        );
        assert_eq!(
            ids(None, Some(1 << 32)).unwrap_err(),
            "`--gid 4294967296` is out of range: ids go from 0 to 2147483647"
        );
        assert_eq!(ids(Some(MAX_ID), Some(0)), Ok(()));
    }
}
