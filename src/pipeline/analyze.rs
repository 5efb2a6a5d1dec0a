//! `analyze`: read each image once and find what ties it to root, what the conversion
//! would do, and the converted image's runtime contract.

use crate::analyze::contract::RuntimeContract;
use crate::analyze::{self, Facts};
use crate::control::Event;
use crate::error::Error;
use crate::layer::accounts::Accounts;
use crate::layer::{LayerInfo, MergedView};
use crate::model::{ImageConfig, ImageLocation};
use crate::plan::{self, Plan, RecipeFailure};
use crate::recipe::{MatchedRecipe, Selection};
use crate::transport::Source;
use crate::write::image::converted_config;

use super::request::default_destination;
use super::scan::scan_layers;
use super::{
    AnalyzeOutcome, Contents, ImageAnalysis, ImageRequest, ResolvedImage, RunTarget, Session,
};

impl Session {
    /// Analyzes the image (each platform of an index, unless the request picks one).
    pub fn analyze(&self, request: &ImageRequest) -> Result<AnalyzeOutcome, Error> {
        let result = self.analyze_all(request);
        self.settle(result)
    }

    fn analyze_all(&self, request: &ImageRequest) -> Result<AnalyzeOutcome, Error> {
        let mut resolved = self.resolve(&request.source, request.platform.as_ref())?;
        let contents = resolved.contents.clone();
        match contents {
            Contents::Image(image) => Ok(AnalyzeOutcome::Image(Box::new(self.analyze_image(
                request,
                resolved.source.as_mut(),
                &image,
            )?))),
            Contents::Index(index) => {
                let mut platforms = Vec::new();
                for (_, image) in &index.images {
                    let name = image.platform_name();
                    self.control().events.event(&Event::Platform {
                        platform: &name,
                        converting: false,
                    });
                    platforms.push((
                        name,
                        self.analyze_image(request, resolved.source.as_mut(), image)?,
                    ));
                }
                Ok(AnalyzeOutcome::Index {
                    location: request.source.clone(),
                    digest: index.digest,
                    platforms,
                })
            }
        }
    }

    pub(super) fn analyze_image(
        &self,
        request: &ImageRequest,
        source: &mut dyn Source,
        image: &ResolvedImage,
    ) -> Result<ImageAnalysis, Error> {
        let scratch = self.scratch()?;
        let recipes = &request.recipes;
        let scanned = scan_layers(
            source,
            image,
            &recipes.all(),
            false,
            scratch.path(),
            &self.limits(),
            self.layer_cache(),
            self.control(),
        )?;
        let plan = plan::build(
            &scanned.scan,
            &image.config,
            recipes,
            &request.generic,
            RecipeFailure::Record,
        )
        .map_err(|e| plan_error(&request.source, e))?;
        let converted = converted_config(&image.config, &plan);
        // The contract describes the image `unroot convert` writes by default.
        let run_as = RunTarget {
            // Named as `unroot convert` names it, from what the source records.
            location: default_destination(&request.source)
                .ok()
                .map(|d| super::request::named_destination(&d, &*source, super::request::SUFFIX)),
            digest: None,
            written: false,
        };
        let mut scanned = scanned;
        let mut analysis = examine(
            &request.source,
            image,
            Examined {
                view: &scanned.scan.view,
                layers: &scanned.scan.layers,
                config: &image.config,
            },
            &converted,
            plan,
            recipes,
            run_as,
        );
        // What is fixed is what the converted image no longer has: the analyzers run again
        // over the image as `convert` writes it.
        let view = &mut scanned.scan.view;
        view.apply_layer(analysis.plan.layer_changes());
        let matched = MatchedRecipe::find(recipes, view);
        let accounts = Accounts::read(view).unwrap_or_default();
        let remaining = analyze::analyze(&Facts {
            view,
            layers: &scanned.scan.layers,
            config: &converted,
            accounts: &accounts,
            plan: &analysis.plan,
            recipes: &matched,
        });
        analysis.fixed = analysis
            .findings
            .iter()
            .map(|f| {
                !remaining
                    .iter()
                    .any(|r| r.rule.id == f.rule.id && r.location.same_place(&f.location))
            })
            .collect();
        Ok(analysis)
    }
}

/// The image the analyzers look at: the source for `analyze`, the converted image for
/// `convert`.
pub(crate) struct Examined<'a> {
    pub view: &'a MergedView,
    pub layers: &'a [LayerInfo],
    pub config: &'a ImageConfig,
}

/// Runs the analyzers over `examined` and describes the result; `converted` is the
/// converted image's config (the contract's).
pub(crate) fn examine(
    location: &ImageLocation,
    image: &ResolvedImage,
    examined: Examined<'_>,
    converted: &ImageConfig,
    plan: Plan,
    recipes: &Selection,
    run_as: RunTarget,
) -> ImageAnalysis {
    let view = examined.view;
    let matched = MatchedRecipe::find(recipes, view);
    let accounts = Accounts::read(view).unwrap_or_default();
    let findings = analyze::analyze(&Facts {
        view,
        layers: examined.layers,
        config: examined.config,
        accounts: &accounts,
        plan: &plan,
        recipes: &matched,
    });
    let contract = RuntimeContract::new(view, converted, &plan, &matched);
    ImageAnalysis {
        location: location.clone(),
        digest: image.digest.clone(),
        platform: image.platform.clone(),
        findings,
        fixed: Vec::new(),
        recipes: matched.iter().map(MatchedRecipe::summary).collect(),
        plan,
        config_before: image.config.clone(),
        config_after: converted.clone(),
        contract,
        run_as,
    }
}

/// The error for a plan that cannot be made.
pub(crate) fn plan_error(location: &ImageLocation, e: plan::BuildError) -> Error {
    match e {
        plan::BuildError::Generic(source) => Error::Plan {
            location: location.to_string(),
            source,
        },
        plan::BuildError::Recipe(source) => Error::RecipeApply {
            location: location.to_string(),
            source,
        },
    }
}

/// The name an image is run by: a registry reference as docker takes it, else the
/// location.
pub fn run_name(location: &ImageLocation) -> String {
    match location {
        ImageLocation::Registry(r) => r.to_string(),
        other => other.to_string(),
    }
}
