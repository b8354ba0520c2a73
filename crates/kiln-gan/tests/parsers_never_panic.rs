//! Parsers of untrusted files return errors, never panic, whatever the bytes.

use kiln_gan::idx::{encode_idx_images, parse_idx_images, parse_idx_labels, IdxImages};
use kiln_gan::images::decode_image_bytes;
use kiln_gan::npy::{encode_npy, parse_npy};
use proptest::prelude::*;

fn valid_idx(gzip: bool) -> Vec<u8> {
    let images = IdxImages {
        count: 2,
        rows: 3,
        cols: 3,
        pixels: (0..18).collect(),
    };
    encode_idx_images(&images, gzip).unwrap()
}

/// A valid file with a few bytes overwritten and a possible cut: nearer to real corruption
/// than uniform noise, which rarely gets past the magic.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(at, value) in edits {
        let len = bytes.len();
        bytes[at % len] = value;
    }
    bytes.truncate(cut.min(bytes.len()));
    bytes
}

proptest! {
    #[test]
    fn idx_parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_idx_images(&bytes, "fuzz");
        let _ = parse_idx_labels(&bytes, "fuzz");
        let mut with_magic = vec![0, 0, 8, 3];
        with_magic.extend_from_slice(&bytes);
        let _ = parse_idx_images(&with_magic, "fuzz");
    }

    #[test]
    fn idx_parser_never_panics_on_corrupted_files(
        gzip in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let bytes = mutate(valid_idx(gzip), &edits, cut);
        if let Ok(images) = parse_idx_images(&bytes, "fuzz") {
            prop_assert_eq!(images.pixels.len(), images.count * images.rows * images.cols);
        }
    }

    #[test]
    fn npy_parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_npy(&bytes, "fuzz");
        let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = parse_npy(&with_magic, "fuzz");
    }

    #[test]
    fn npy_parser_never_panics_on_corrupted_files(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let valid = encode_npy(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let bytes = mutate(valid, &edits, cut);
        if let Ok(array) = parse_npy(&bytes, "fuzz") {
            prop_assert_eq!(array.data.len(), array.shape.iter().product::<usize>());
        }
    }

    #[test]
    fn image_decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_image_bytes(&bytes, "fuzz");
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&bytes);
        let _ = decode_image_bytes(&png, "fuzz");
        let mut jpeg = vec![0xff, 0xd8];
        jpeg.extend_from_slice(&bytes);
        let _ = decode_image_bytes(&jpeg, "fuzz");
    }
}
