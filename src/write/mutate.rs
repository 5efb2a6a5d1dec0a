//! One image's mutation: the plan becomes the new layer, the layers with owners out of
//! range are rewritten when asked, and the config and manifest are assembled; what comes
//! out is ready for a sink.

use std::io;
use std::path::{Path, PathBuf};

use crate::control::{Control, Event, Interruptible};
use crate::layer::scan::BodySpool;
use crate::layer::{Compression, LayerInfo};
use crate::model::{media, Descriptor, ImageConfig, ImageLocation, ImageManifest};
use crate::plan::Plan;
use crate::transport::{BlobReader, OutputImage, OutputLayer, TransportError};

use super::image::{assemble, AssembleError, Lineage};
use super::layer::{write_layer, NewLayer};
use super::remap::remap_layer;

/// Opens a layer of the source again, for a rewrite.
pub type Reopen<'a> = dyn FnMut(&Descriptor) -> Result<BlobReader, TransportError> + 'a;

/// Why an image cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    /// A layer could not be written to the work directory.
    #[error("cannot write a layer in `{}`: {source}", dir.display())]
    Write {
        /// The work directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A layer to rewrite could not be read again.
    #[error(transparent)]
    Read(#[from] TransportError),
    /// The manifest cannot be assembled.
    #[error(transparent)]
    Assemble(#[from] AssembleError),
}

/// What one image's conversion writes.
pub struct Mutation {
    /// The image for the sink: manifest, config, and its layers' descriptors.
    pub output: OutputImage,
    /// The new layer, when the plan changes a file.
    pub new_layer: Option<NewLayer>,
    /// Layers rewritten with owners remapped, by position.
    pub rewritten: Vec<(usize, NewLayer)>,
    /// Every layer of the converted image, as reports describe them.
    pub layers: Vec<LayerInfo>,
}

/// The source image, as the scan found it.
pub struct SourceImage<'a> {
    /// Where it was read (for messages).
    pub location: &'a ImageLocation,
    /// Its manifest.
    pub manifest: &'a ImageManifest,
    /// Its config.
    pub config: &'a ImageConfig,
    /// Its layers, base first, as read.
    pub layers: &'a [LayerInfo],
    /// The bodies the scan kept (of files the plan re-owns).
    pub spool: &'a BodySpool,
}

/// Writes the plan's layer in `dir` and assembles the converted image. With `remap`
/// (which opens a source layer again), the layers that hold owners above 65535 are
/// rewritten with those owners mapped to the runtime UID and group 0, and `plan` gains a
/// note for each.
pub fn mutate(
    source: &SourceImage<'_>,
    plan: &mut Plan,
    remap: Option<&mut Reopen<'_>>,
    lineage: &Lineage<'_>,
    dir: &Path,
    control: &Control,
) -> Result<Mutation, MutateError> {
    let (events, cancel) = (control.events.as_ref(), &control.cancel);
    let write_error = |source| MutateError::Write {
        dir: dir.to_path_buf(),
        source,
    };
    let new_layer = if plan.changes.is_empty() {
        None
    } else {
        events.event(&Event::WritingLayer {
            entries: plan.changes.len(),
        });
        Some(write_layer(&plan.changes, source.spool, dir, cancel).map_err(write_error)?)
    };
    let mut base_layers: Vec<OutputLayer> = source
        .manifest
        .layers
        .iter()
        .zip(source.layers)
        .map(|(desc, info)| OutputLayer {
            desc: desc.clone(),
            diff_id: info.diff_id.clone(),
            uncompressed_size: info.uncompressed_size,
        })
        .collect();
    let mut layers = source.layers.to_vec();
    // Layers with owners a rootless runtime cannot map are rewritten when asked (a layer on
    // top cannot fix them); every other layer stays as it is.
    let mut config = source.config.clone();
    let mut rewritten = Vec::new();
    if let Some(open) = remap {
        for (i, info) in source.layers.iter().enumerate() {
            if info.out_of_range == 0 {
                continue;
            }
            let desc = &source.manifest.layers[i];
            events.event(&Event::RewritingLayer {
                index: i,
                digest: &desc.digest,
                out_of_range: info.out_of_range,
            });
            let blob = Interruptible::new(open(desc)?, cancel);
            let remapped = remap_layer(blob, desc, plan.identity.uid, dir)
                .map_err(|e| TransportError::from_read(e, source.location))?;
            let layer = remapped.layer;
            plan.notes.push(format!(
                "layer {} ({}) rewritten as {}: {} entries owned by ids above 65535 now belong to {}:0",
                i + 1,
                desc.digest,
                layer.digest,
                remapped.remapped,
                plan.identity.uid
            ));
            base_layers[i] = output_layer(&layer);
            layers[i] = written_layer_info(&layer);
            config.set_diff_id(i, &layer.diff_id);
            rewritten.push((i, layer));
        }
    }
    let new_output = new_layer.as_ref().map(output_layer);
    layers.extend(new_layer.as_ref().map(written_layer_info));
    let output = assemble(
        source.manifest,
        &config,
        &base_layers,
        plan,
        new_output.as_ref(),
        lineage,
    )?;
    Ok(Mutation {
        output,
        new_layer,
        rewritten,
        layers,
    })
}

/// A layer unroot wrote, as the manifest lists it.
fn output_layer(l: &NewLayer) -> OutputLayer {
    OutputLayer {
        desc: Descriptor::new(media::OCI_LAYER_GZIP, l.digest.clone(), l.size),
        diff_id: l.diff_id.clone(),
        uncompressed_size: l.uncompressed_size,
    }
}

/// A layer unroot wrote, as the report describes layers.
fn written_layer_info(l: &NewLayer) -> LayerInfo {
    LayerInfo {
        digest: l.digest.clone(),
        diff_id: l.diff_id.clone(),
        uncompressed_size: l.uncompressed_size,
        compression: Compression::Gzip,
        entries: l.entries as u64,
        out_of_range: 0,
        out_of_range_example: None,
    }
}
