//! File formats: IDX, PNG grids and plots, npy, atomic writes.

use std::path::PathBuf;

use kiln_core::Error;
use kiln_gan::data::{parse_data_spec, Dataset};
use kiln_gan::idx::{
    encode_idx_images, encode_idx_labels, parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels,
    write_idx_images, IdxImages,
};
use kiln_gan::npy::{encode_npy, parse_npy, read_npy, write_npy};
use kiln_gan::plot::{write_loss_plot, write_scatter_plot, Scatter, Series};
use kiln_gan::png_out::{write_image_grid, GridOptions};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-gan-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_images() -> IdxImages {
    IdxImages {
        count: 3,
        rows: 2,
        cols: 4,
        pixels: (0..24).map(|i| i * 10).collect(),
    }
}

/// Decode a PNG file: (width, height, colour type, pixels).
fn decode_png(path: &std::path::Path) -> (u32, u32, png::ColorType, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).unwrap();
    buffer.truncate(frame.buffer_size());
    (frame.width, frame.height, frame.color_type, buffer)
}

#[test]
fn idx_images_round_trip_raw_and_gzip() {
    let dir = scratch_dir("idx");
    for name in ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"] {
        let path = dir.join(name);
        write_idx_images(&path, &tiny_images()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), name.ends_with(".gz"));
        assert_eq!(read_idx_images(&path).unwrap(), tiny_images());

        let mut data = parse_data_spec(&format!("idx:{}", path.display()))
            .unwrap()
            .load(None)
            .unwrap();
        assert_eq!(data.image_shape(), Some((1, 2, 4)));
        assert_eq!(data.len(), Some(3));
        let mut batch = Vec::new();
        data.batch(3, &mut rand::SeedableRng::seed_from_u64(0), &mut batch);
        assert!(batch.iter().all(|v| (0.0..=1.0).contains(v)));
        let resized: Dataset = parse_data_spec(&format!("idx:{}", path.display()))
            .unwrap()
            .load(Some((3, 4, 8)))
            .unwrap();
        assert_eq!(resized.dim(), 3 * 4 * 8);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn idx_labels_round_trip_raw_and_gzip() {
    let dir = scratch_dir("idx-labels");
    for gzip in [false, true] {
        let path = dir.join(format!("labels-{gzip}"));
        std::fs::write(&path, encode_idx_labels(&[3, 1, 4, 1, 5], gzip).unwrap()).unwrap();
        assert_eq!(read_idx_labels(&path).unwrap(), vec![3, 1, 4, 1, 5]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_idx_is_a_bad_file_error_not_a_panic() {
    for gzip in [false, true] {
        let bytes = encode_idx_images(&tiny_images(), gzip).unwrap();
        for cut in [0, 3, 10, 16, bytes.len() - 1] {
            let err = parse_idx_images(&bytes[..cut], "cut.idx").unwrap_err();
            let Error::BadFile { path, msg } = &err else {
                panic!("expected BadFile, got {err:?}")
            };
            assert_eq!(path, "cut.idx");
            assert!(
                msg.contains("truncated") || msg.contains("gzip") || msg.contains("magic"),
                "gzip {gzip}, cut {cut}: {msg}"
            );
        }
    }
}

#[test]
fn bad_magic_idx_is_a_bad_file_error() {
    let mut bytes = encode_idx_images(&tiny_images(), false).unwrap();
    bytes[3] = 0x04;
    let err = parse_idx_images(&bytes, "m.idx").unwrap_err().to_string();
    assert!(err.contains("bad magic") && err.contains("2051"), "{err}");
    let images = encode_idx_images(&tiny_images(), true).unwrap();
    let err = parse_idx_labels(&images, "i.gz").unwrap_err().to_string();
    assert!(err.contains("images file"), "{err}");
}

#[test]
fn corrupt_gzip_idx_is_a_bad_file_error() {
    let mut bytes = encode_idx_images(&tiny_images(), true).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    bytes[middle + 1] ^= 0x5a;
    assert!(matches!(parse_idx_images(&bytes, "x.gz"), Err(Error::BadFile { .. })));
}

#[test]
fn png_grid_decodes_back_with_the_right_size() {
    let dir = scratch_dir("grid");
    let path = dir.join("samples.png");
    let (n, c, h, w) = (10, 3, 5, 7);
    let samples: Vec<f32> = (0..n * c * h * w).map(|i| (i % 11) as f32 / 10.0).collect();
    let options = GridOptions {
        columns: Some(4),
        ..GridOptions::default()
    };
    write_image_grid(&path, &samples, n, (c, h, w), &options).unwrap();
    let (width, height, color, pixels) = decode_png(&path);
    assert_eq!((width, height), (4 * (7 + 2) + 2, 3 * (5 + 2) + 2));
    assert_eq!(color, png::ColorType::Rgb);
    // First pixel of the first image: channel planes hold values 0, 35 % 11, 70 % 11 (×0.1).
    let first = ((2 * width + 2) * 3) as usize;
    assert_eq!(&pixels[first..first + 3], &[0, 51, 102]);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "a temp file was left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scatter_and_loss_plots_write_decodable_pngs() {
    let dir = scratch_dir("plots");
    let ring = kiln_gan::data::GaussianMixture::ring8();
    let real: Vec<f32> = ring.modes().iter().flat_map(|m| m.iter().copied()).collect();
    let scatter = Scatter {
        title: "ring8 step 100",
        range: ring.plot_range(),
        real: &real,
        generated: &[0.0, 0.0, f32::NAN, 1.0, 99.0, -99.0],
        modes: &ring.modes(),
    };
    write_scatter_plot(dir.join("scatter.png"), &scatter).unwrap();
    assert_eq!(decode_png(&dir.join("scatter.png")).0, 512);

    let series = [Series {
        name: "loss_d".into(),
        points: (0..100).map(|i| (i as f64, (i as f64).sin())).collect(),
    }];
    write_loss_plot(dir.join("losses.png"), "losses", &series).unwrap();
    let (width, height, ..) = decode_png(&dir.join("losses.png"));
    assert_eq!((width, height), (720, 420));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npy_round_trips_through_a_file() {
    let dir = scratch_dir("npy");
    let path = dir.join("z.npy");
    let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    write_npy(&path, &data, &[2, 3, 4]).unwrap();
    let array = read_npy(&path).unwrap();
    assert_eq!(array.shape, vec![2, 3, 4]);
    assert_eq!(array.data, data);
    let header = std::fs::read(&path).unwrap();
    assert!(String::from_utf8_lossy(&header[..128]).contains("'shape': (2, 3, 4)"));
    assert!(write_npy(&path, &data, &[5, 5]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_npy_is_a_bad_file_error() {
    let bytes = encode_npy(&[1.0, 2.0, 3.0, 4.0], &[4]).unwrap();
    for cut in [0, 5, 9, 40, bytes.len() - 1] {
        let err = parse_npy(&bytes[..cut], "z.npy").unwrap_err();
        assert!(matches!(err, Error::BadFile { .. }), "cut {cut}: {err:?}");
    }
    let err = parse_npy(&bytes[..bytes.len() - 3], "z.npy").unwrap_err().to_string();
    assert!(err.contains("needs 16 data bytes but the file has 13"), "{err}");
}

#[test]
fn npy_of_unsupported_dtype_says_so() {
    let mut bytes = encode_npy(&[1.0], &[1]).unwrap();
    let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
    bytes[at..at + 3].copy_from_slice(b"<i4");
    let err = parse_npy(&bytes, "i.npy").unwrap_err().to_string();
    assert!(err.contains("'<i4' is not supported"), "{err}");
}

#[test]
fn reads_a_file_written_by_numpy() {
    // np.save(path, np.arange(6, dtype=np.float64).reshape(2, 3) / 4) with NumPy 2.
    let hex: String = [
        "934e554d5059010076007b276465736372273a20273c6638272c2027666f727472616e5f6f726465",
        "72273a2046616c73652c20277368617065273a2028322c2033292c207d2020202020202020202020",
        "20202020202020202020202020202020202020202020202020202020202020202020202020202020",
        "202020202020200a0000000000000000000000000000d03f000000000000e03f000000000000e83f",
        "000000000000f03f000000000000f43f",
    ]
    .concat();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let array = parse_npy(&bytes, "numpy.npy").unwrap();
    assert_eq!(array.shape, vec![2, 3]);
    assert_eq!(array.data, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.25]);
}
