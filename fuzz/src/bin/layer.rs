//! A layer blob (gzip, zstd or plain tar), read as unroot reads layers: digest checked,
//! inflated, tar guarded and parsed, every entry's metadata read; then merged into a view
//! and walked.

use unroot::control::Cancel;
use unroot::layer::merged::LayerChange;
use unroot::layer::reader::read_layer;
use unroot::layer::{ImagePath, MergedView};
use unroot::model::{Descriptor, Digest};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let desc = Descriptor::new("fuzz", Digest::sha256_of(data), data.len() as u64);
        let mut changes = Vec::new();
        let read = read_layer(
            std::io::Cursor::new(data.to_vec()),
            &desc,
            None,
            &mut |path, change, body| {
                // Read a little of each body, as the scan does for small files.
                let mut head = [0u8; 512];
                let _ = body.read(&mut head);
                changes.push(LayerChange {
                    path,
                    change,
                    content: None,
                });
                Ok(())
            },
            &Cancel::new(),
        );
        if read.is_ok() {
            let mut view = MergedView::new();
            view.apply_layer(changes);
            for (path, _) in view.iter().take(1000) {
                let _ = view.resolve(&path.clone());
            }
            let _ = view.resolve(&ImagePath::new("/etc/passwd"));
        }
    });
}
