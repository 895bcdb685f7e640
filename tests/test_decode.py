"""The image decoders (csrc/data/) against reference readers: Pillow for PNG and JPEG,
pydicom for DICOM, numpy for NPY and IDX; and bad files of every kind, each of which
must raise trugrade.DecodeError naming the file."""
import gzip
import os
import struct
import zlib

import numpy as np
import pytest

import trugrade
from trugrade import DecodeError

from PIL import Image, ImageOps  # noqa: E402 - test dependencies, installed by .ci/setup

RNG = np.random.default_rng(1234)
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def image_array(height, width, channels=None, dtype=np.uint8, high=None):
    shape = (height, width) if channels is None else (height, width, channels)
    high = high if high is not None else np.iinfo(dtype).max + 1
    return RNG.integers(0, high, size=shape).astype(dtype)


def as_chw(hwc):
    return hwc[None] if hwc.ndim == 2 else np.transpose(hwc, (2, 0, 1))


def assert_decode_error(path, *fragments, **kwargs):
    with pytest.raises(DecodeError) as info:
        trugrade.read_image(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------- PNG

PNG_MODES = [
    ("L", lambda: Image.fromarray(image_array(13, 17)), "L"),
    ("LA", lambda: Image.fromarray(image_array(13, 17, 2), "LA"), "LA"),
    ("RGB", lambda: Image.fromarray(image_array(13, 17, 3)), "RGB"),
    ("RGBA", lambda: Image.fromarray(image_array(13, 17, 4)), "RGBA"),
    ("1", lambda: Image.fromarray(image_array(13, 17, high=2).astype(bool)), "L"),
    ("I;16", lambda: Image.fromarray(image_array(13, 17, dtype=np.uint16)), None),
]


@pytest.mark.parametrize("mode,make,convert", PNG_MODES, ids=[m[0] for m in PNG_MODES])
def test_png_modes_match_pillow(tmp_path, mode, make, convert):
    path = tmp_path / "image.png"
    make().save(path)
    reference = Image.open(path)
    expected = np.asarray(reference.convert(convert) if convert else reference)
    got = trugrade.read_image(path)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, as_chw(expected))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("transparency", [False, True])
def test_png_palette_expands_like_pillow(tmp_path, bits, transparency):
    colours = 2 ** bits
    indices = image_array(9, 14, high=colours)
    image = Image.fromarray(indices, "P")
    image.putpalette(RNG.integers(0, 256, size=colours * 3).astype(np.uint8).tobytes())
    path = tmp_path / "palette.png"
    if transparency:
        image.save(path, bits=bits, transparency=bytes(RNG.integers(0, 256, size=colours).astype(np.uint8)))
    else:
        image.save(path, bits=bits)
    reference = Image.open(path)
    assert reference.mode == "P"
    expected = np.asarray(reference.convert("RGBA" if transparency else "RGB"))
    np.testing.assert_array_equal(trugrade.read_image(path), as_chw(expected))


def write_png(path, array, color_type, bit_depth=None):
    """A plain PNG writer for what Pillow cannot write (16-bit colour, 2/4-bit gray)."""
    height, width = array.shape[:2]
    bit_depth = bit_depth or array.dtype.itemsize * 8
    if bit_depth < 8:
        per_byte = 8 // bit_depth
        padded = np.zeros((height, -(-width // per_byte) * per_byte), np.uint8)
        padded[:, :width] = array
        groups = padded.reshape(height, -1, per_byte)
        packed = np.zeros(groups.shape[:2], np.uint8)
        for k in range(per_byte):
            packed |= groups[:, :, k] << (8 - bit_depth * (k + 1))
        rows = packed
    else:
        rows = array.astype(array.dtype.newbyteorder(">")).reshape(height, -1).view(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) +
                     chunk(b"IEND", b""))


@pytest.mark.parametrize("channels,color_type", [(1, 0), (2, 4), (3, 2), (4, 6)])
def test_png_16_bit_all_colour_types(tmp_path, channels, color_type):
    array = image_array(7, 11, channels if channels > 1 else None, np.uint16)
    path = tmp_path / "deep.png"
    write_png(path, array, color_type)
    got = trugrade.read_image(path)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, as_chw(array))
    if channels > 1:  # Pillow keeps the high byte of 16-bit colour (and opens LA;16 as RGBA)
        pillow = np.asarray(Image.open(path).convert("LA" if channels == 2 else None))
        np.testing.assert_array_equal(got >> 8, as_chw(pillow))


@pytest.mark.parametrize("bits", [2, 4])
def test_png_low_bit_gray_scaled_like_pillow(tmp_path, bits):
    array = image_array(6, 13, high=2 ** bits)
    path = tmp_path / "gray.png"
    write_png(path, array, 0, bits)
    expected = np.asarray(Image.open(path).convert("L"))
    np.testing.assert_array_equal(trugrade.read_image(path), expected[None])


# ---------------------------------------------------------------- JPEG

def jpeg_diff(got, expected):
    return np.abs(got.astype(int) - expected.astype(int)).max()


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_jpeg_matches_pillow(tmp_path, mode, progressive, subsampling):
    smooth = np.clip(np.cumsum(image_array(37, 53, 3, high=9).astype(int), axis=1) * 2, 0, 255).astype(np.uint8)
    image = Image.fromarray(smooth).convert(mode)
    path = tmp_path / "photo.jpg"
    image.save(path, quality=90, progressive=progressive, subsampling=subsampling)
    expected = np.asarray(Image.open(path))
    got = trugrade.read_image(path)
    assert got.dtype == np.uint8 and got.shape == as_chw(expected).shape
    assert jpeg_diff(got, as_chw(expected)) <= 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_like_exif_transpose(tmp_path, orientation):
    image = Image.fromarray(np.kron(image_array(4, 6, 3), np.ones((8, 8, 1), np.uint8)))  # 32 x 48, blocky
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "oriented.jpg"
    image.save(path, exif=exif, quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    got = trugrade.read_image(path)
    assert got.shape == as_chw(expected).shape
    assert jpeg_diff(got, as_chw(expected)) <= 1
    info = trugrade.probe_image(path)
    assert (info["height"], info["width"]) == expected.shape[:2]


def test_jpeg_cmyk_refused(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (10, 20, 30, 40)).save(path)
    assert_decode_error(path, "CMYK")


# ---------------------------------------------------------------- DICOM

import pydicom  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402


def dicom_reference(path):
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array
    return dataset, (pixels[None] if pixels.ndim == 2 else np.transpose(pixels, (2, 0, 1)))


@pytest.mark.filterwarnings("ignore:The pixel data")
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_expb.dcm", "MR_small_padded.dcm", "examples_overlay.dcm"])
def test_dicom_monochrome_matches_pydicom(name):
    path = get_testdata_file(name)
    dataset, pixels = dicom_reference(path)
    slope = float(dataset.get("RescaleSlope", 1))
    intercept = float(dataset.get("RescaleIntercept", 0))
    got = trugrade.read_image(path)
    if dataset.PixelRepresentation == 0 and (slope, intercept) == (1.0, 0.0):
        assert got.dtype == pixels.dtype
        np.testing.assert_array_equal(got, pixels)
    else:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, pixels * slope + intercept, rtol=1e-6)


@pytest.mark.parametrize("name", ["ExplVR_BigEnd.dcm", "SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm",
                                  "examples_rgb_color.dcm"])
def test_dicom_rgb_matches_pydicom(name):
    path = get_testdata_file(name)
    _, pixels = dicom_reference(path)
    got = trugrade.read_image(path)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, pixels)


def window_reference(pixels, dataset):
    from pydicom.pixels import apply_windowing
    windowed = apply_windowing(pixels.astype(np.float64), dataset)
    bits = dataset.BitsStored
    low, high = (0, 2 ** bits - 1) if dataset.PixelRepresentation == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    slope, intercept = float(dataset.get("RescaleSlope", 1)), float(dataset.get("RescaleIntercept", 0))
    low, high = sorted((low * slope + intercept, high * slope + intercept))
    return (windowed - low) / (high - low)


def test_dicom_window_matches_pydicom():
    path = get_testdata_file("MR_small.dcm")
    dataset, pixels = dicom_reference(path)
    got = trugrade.read_image(path, window=True)
    assert got.dtype == np.float32 and got.min() >= 0 and got.max() <= 1
    np.testing.assert_allclose(got, window_reference(pixels, dataset), atol=1e-6)


def write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=None, signed=False, planar=0, slope=None,
                intercept=None, center=None, width=None, implicit=False, frames=None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Decode"
    rgb = photometric == "RGB"
    ds.Rows, ds.Columns = pixels.shape[-2:] if rgb and planar else pixels.shape[:2]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = photometric
    if rgb:
        ds.PlanarConfiguration = planar
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames is not None:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if center is not None:
        ds.WindowCenter, ds.WindowWidth = center, width
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("implicit", [False, True])
def test_dicom_12_bit_signed_with_rescale(tmp_path, implicit):
    pixels = RNG.integers(-2048, 2048, size=(10, 12)).astype(np.int16)
    path = write_dicom(tmp_path / "ct.dcm", pixels, bits_stored=12, signed=True, slope="0.5", intercept="-10",
                       implicit=implicit)
    dataset, reference = dicom_reference(path)
    np.testing.assert_array_equal(reference[0], pixels)
    got = trugrade.read_image(path)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0], pixels * 0.5 - 10)


def test_dicom_12_bit_unsigned_masks_unused_bits(tmp_path):
    pixels = RNG.integers(0, 4096, size=(8, 9)).astype(np.uint16)
    path = write_dicom(tmp_path / "mr.dcm", pixels | 0xF000, bits_stored=12)
    got = trugrade.read_image(path)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got[0], pixels)


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = RNG.integers(0, 4096, size=(8, 9)).astype(np.uint16)
    path = write_dicom(tmp_path / "cr.dcm", pixels, photometric="MONOCHROME1", bits_stored=12, center="2000",
                       width="1500")
    dataset, reference = dicom_reference(path)
    np.testing.assert_array_equal(trugrade.read_image(path)[0], 4095 - pixels)
    windowed = trugrade.read_image(path, window=True)
    np.testing.assert_allclose(windowed, 1 - window_reference(reference, dataset), atol=1e-6)


def test_dicom_8_bit_monochrome_and_window_default(tmp_path):
    pixels = image_array(5, 7)
    path = write_dicom(tmp_path / "us.dcm", pixels)
    np.testing.assert_array_equal(trugrade.read_image(path), pixels[None])
    np.testing.assert_allclose(trugrade.read_image(path, window=True)[0], pixels / 255.0, atol=1e-6)


@pytest.mark.parametrize("planar", [0, 1])
def test_dicom_rgb_planar_configurations(tmp_path, planar):
    hwc = image_array(6, 5, 3)
    stored = np.transpose(hwc, (2, 0, 1)) if planar else hwc
    path = write_dicom(tmp_path / "rgb.dcm", stored, photometric="RGB", planar=planar)
    _, reference = dicom_reference(path)
    np.testing.assert_array_equal(reference, as_chw(hwc))
    np.testing.assert_array_equal(trugrade.read_image(path), as_chw(hwc))


@pytest.mark.parametrize("name,uid,words", [
    ("SC_rgb_dcmtk_+eb+cr.dcm", "1.2.840.10008.1.2.4.50", "JPEG Baseline"),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", "RLE Lossless"),
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", "JPEG 2000"),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", "JPEG-LS"),
])
def test_dicom_compressed_refused_by_name(name, uid, words):
    assert_decode_error(get_testdata_file(name), uid, words, "compressed")


def test_dicom_unsupported_kinds_refused(tmp_path):
    assert_decode_error(get_testdata_file("examples_palette.dcm"), "PALETTE COLOR")
    assert_decode_error(get_testdata_file("rtdose.dcm"), "frames")
    assert_decode_error(get_testdata_file("rtplan.dcm"), "no pixel data")
    assert_decode_error(get_testdata_file("MR_truncated.dcm"), "truncated")


# ---------------------------------------------------------------- IDX

def idx_bytes(array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_images_and_labels(tmp_path, compress):
    images = RNG.integers(0, 256, (5, 28, 27)).astype(np.uint8)
    labels = RNG.integers(0, 10, 5).astype(np.uint8)
    suffix = ".gz" if compress else ""
    pack = gzip.compress if compress else (lambda b: b)
    image_path = tmp_path / f"images-idx3-ubyte{suffix}"
    label_path = tmp_path / f"labels-idx1-ubyte{suffix}"
    image_path.write_bytes(pack(idx_bytes(images)))
    label_path.write_bytes(pack(idx_bytes(labels)))
    got = trugrade.read_idx(image_path)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(trugrade.read_image(image_path), images)
    got_labels = trugrade.read_idx(label_path)
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_labels, labels)
    assert_decode_error(label_path, "labels")


def test_idx_gzip_of_several_members(tmp_path):
    images = RNG.integers(0, 256, (3, 4, 5)).astype(np.uint8)
    data = idx_bytes(images)
    path = tmp_path / "split-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[:30]) + gzip.compress(data[30:]))
    np.testing.assert_array_equal(trugrade.read_idx(path), images)


@pytest.mark.parametrize("split,count", [("t10k", 10000), ("train", 60000)])
def test_fashion_mnist(split, count):
    def numpy_idx(path):
        data = gzip.open(path).read()
        ndim = data[3]
        shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)

    images_path = os.path.join(FASHION_MNIST, f"{split}-images-idx3-ubyte.gz")
    labels_path = os.path.join(FASHION_MNIST, f"{split}-labels-idx1-ubyte.gz")
    images, labels = trugrade.read_idx(images_path), trugrade.read_idx(labels_path)
    assert images.shape == (count, 28, 28) and labels.shape == (count,)
    np.testing.assert_array_equal(images, numpy_idx(images_path))
    np.testing.assert_array_equal(labels, numpy_idx(labels_path))


def test_idx_other_element_types_refused(tmp_path):
    path = tmp_path / "float-idx3"
    path.write_bytes(struct.pack(">BBBBIII", 0, 0, 0x0D, 3, 1, 2, 2) + b"\x00" * 16)
    assert_decode_error(path, "float32")


# ---------------------------------------------------------------- NPY

NPY_SHAPES = [(9, 7), (1, 9, 7), (3, 9, 7), (11, 9, 7), (9, 7, 1), (9, 7, 3), (9, 7, 4), (3, 9, 4)]


def npy_expected(array):
    if array.ndim == 2:
        return array[None]
    if array.shape[2] <= 4 and array.shape[0] > 4:
        return np.transpose(array, (2, 0, 1))
    return array


@pytest.mark.parametrize("dtype", ["u1", "u2", "f4", "f8"])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("shape", NPY_SHAPES, ids=str)
def test_npy_matches_numpy(tmp_path, dtype, order, endian, shape):
    base = RNG.random(shape) * 1000 if dtype[0] == "f" else RNG.integers(0, 2 ** (8 * int(dtype[1])), shape)
    array = np.asarray(base, dtype=np.dtype(endian + dtype), order=order)
    path = tmp_path / "array.npy"
    np.save(path, array)
    got = trugrade.read_image(path)
    expected = npy_expected(np.load(path)).astype({"u1": np.uint8, "u2": np.uint16}.get(dtype, np.float32))
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_header_versions(tmp_path, version):
    array = RNG.integers(0, 65536, (11, 6, 5)).astype(np.uint16)  # an 11-band image
    path = tmp_path / "bands.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, version=version)
    np.testing.assert_array_equal(trugrade.read_image(path), array)


def test_npy_unsupported_refused(tmp_path):
    for name, array in [("int16", np.zeros((4, 4), np.int16)), ("1-D", np.zeros(5, np.uint8)),
                        ("4-D", np.zeros((2, 2, 2, 2), np.uint8))]:
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
        assert_decode_error(path)


# ---------------------------------------------------------------- bad files

def sample_files(tmp_path):
    """One small valid file per decoder."""
    files = {}
    files["png"] = tmp_path / "rgb.png"
    Image.fromarray(image_array(16, 20, 3)).save(files["png"])
    files["jpeg"] = tmp_path / "rgb.jpg"
    Image.fromarray(image_array(16, 20, 3)).save(files["jpeg"], progressive=True)
    files["dicom"] = tmp_path / "ct.dcm"
    files["dicom"].write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read())
    files["npy"] = tmp_path / "a.npy"
    np.save(files["npy"], image_array(6, 7, 3))
    files["idx"] = tmp_path / "images-idx3-ubyte"
    files["idx"].write_bytes(idx_bytes(RNG.integers(0, 256, (3, 5, 6)).astype(np.uint8)))
    files["idx.gz"] = tmp_path / "images-idx3-ubyte.gz"
    files["idx.gz"].write_bytes(gzip.compress(files["idx"].read_bytes()))
    return files


def cut_points(size):
    return sorted(set(list(range(0, min(size, 160))) + list(range(160, size, max(1, size // 97))) +
                      [size - k for k in range(1, 14) if size - k > 0]))


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom", "npy", "idx", "idx.gz"])
def test_truncated_files_refused_at_every_cut(tmp_path, kind):
    source = sample_files(tmp_path)[kind]
    trugrade.read_image(source)
    data = source.read_bytes()
    cut = tmp_path / ("cut_" + source.name)
    for size in cut_points(len(data)):
        cut.write_bytes(data[:size])
        with pytest.raises(DecodeError) as info:
            trugrade.read_image(cut)
        assert str(cut) in str(info.value), (size, str(info.value))


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom", "npy", "idx", "idx.gz"])
def test_corrupted_bytes_never_crash(tmp_path, kind):
    source = sample_files(tmp_path)[kind]
    data = bytearray(source.read_bytes())
    bad = tmp_path / ("bad_" + source.name)
    rng = np.random.default_rng(7)
    refused = 0
    for _ in range(150):
        mutated = bytearray(data)
        for at in rng.integers(0, len(data), size=rng.integers(1, 6)):
            mutated[at] = rng.integers(0, 256)
        bad.write_bytes(bytes(mutated))
        try:
            trugrade.read_image(bad)
        except DecodeError as error:
            assert str(bad) in str(error)
            refused += 1
    assert refused > 0


def test_png_crc_corruption_refused(tmp_path):
    path = sample_files(tmp_path)["png"]
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the last IDAT
    path.write_bytes(bytes(data))
    assert_decode_error(path, "PNG")


def test_empty_and_text_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert_decode_error(empty, "empty")
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    assert_decode_error(text, "PNG", "not")
    unknown = tmp_path / "blob.bin"
    unknown.write_bytes(b"\x00\x01\x02\x03" * 10)
    assert_decode_error(unknown, "not an image format")
    with pytest.raises(trugrade.TrugradeIOError):
        trugrade.read_image(tmp_path / "missing.png")


def test_wrong_extension_decodes_by_content(tmp_path):
    files = sample_files(tmp_path)
    expected = trugrade.read_image(files["png"])
    disguised = tmp_path / "really_a_png.jpg"
    disguised.write_bytes(files["png"].read_bytes())
    np.testing.assert_array_equal(trugrade.read_image(disguised), expected)
    info = trugrade.probe_image(disguised)
    assert info["format"] == "PNG" and info["extension_format"] == "JPEG" and info["extension_mismatch"]
    assert not trugrade.probe_image(files["png"])["extension_mismatch"]


def png_bomb(path, width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) +
                     chunk(b"IEND", b""))


def test_pixel_bombs_refused_from_the_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    png_bomb(bomb, 100_000, 100_000)
    assert_decode_error(bomb, "limit")
    # JPEG: a small file whose SOF claims 60000 x 60000
    jpeg = tmp_path / "bomb.jpg"
    Image.fromarray(image_array(8, 8, 3)).save(jpeg)
    data = bytearray(jpeg.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    jpeg.write_bytes(bytes(data))
    assert_decode_error(jpeg, "limit")
    # NPY and DICOM: declared sizes beyond the limit
    npy = tmp_path / "bomb.npy"
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 100000), }".ljust(117) + "\n"
    npy.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\x00" * 64)
    assert_decode_error(npy, "limit")
    dicom = write_dicom(tmp_path / "bomb.dcm", np.zeros((4, 4), np.uint16))
    data = bytearray(dicom.read_bytes())
    for tag in (b"\x28\x00\x10\x00US\x02\x00", b"\x28\x00\x11\x00US\x02\x00"):
        at = data.index(tag) + len(tag)
        data[at:at + 2] = b"\xff\xff"
    dicom.write_bytes(bytes(data))
    assert_decode_error(dicom, "limit")


def test_max_pixels_option(tmp_path):
    path = sample_files(tmp_path)["png"]  # 16 x 20
    assert_decode_error(path, "limit", max_pixels=319)
    assert trugrade.read_image(path, max_pixels=320).shape == (3, 16, 20)
    with pytest.raises(ValueError):
        trugrade.read_image(path, max_pixels=-1)


def test_decode_releases_the_gil_and_is_thread_safe(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    files = sample_files(tmp_path)
    expected = {k: trugrade.read_image(p) for k, p in files.items()}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda kv: (kv[0], trugrade.read_image(kv[1])), list(files.items()) * 8))
    for kind, got in results:
        np.testing.assert_array_equal(got, expected[kind])
    assert isinstance(DecodeError("x"), trugrade.DatasetError)
