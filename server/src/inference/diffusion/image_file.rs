//! PNG files that carry their own recipe: A1111's `parameters` text (read by A1111, ComfyUI,
//! civitai and most image viewers) and our request as JSON in a `duet` chunk, so
//! `server imagine --from FILE.png` can make the same image again.

use super::request::ImageRequest;
use std::io::Cursor;

/// The text chunk holding our request as JSON.
pub const REQUEST_KEY: &str = "duet";
/// The text chunk A1111 writes its generation parameters to.
pub const PARAMETERS_KEY: &str = "parameters";
/// The recipe's field saying how the picture was drawn: `f32` (the same everywhere) or
/// `fast/<cpu class>` (the same on CPUs of that class).
pub const PRECISION_KEY: &str = "precision";

#[derive(Debug, thiserror::Error)]
pub enum ImageFileError {
    #[error("encoding the PNG: {0}")]
    Encode(#[from] png::EncodingError),
    #[error("reading the PNG: {0}")]
    Decode(#[from] png::DecodingError),
    #[error("the PNG has no {REQUEST_KEY:?} chunk (it was not made by Duet)")]
    NoRequest,
    #[error("the PNG's {REQUEST_KEY:?} chunk is not a valid request: {0}")]
    BadRequest(String),
}

/// An 8-bit RGB image, rows top to bottom.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// A1111's `parameters` text for a request made with `model`.
pub fn a1111_parameters(request: &ImageRequest, model: &str) -> String {
    let mut text = request.prompt.clone();
    if !request.negative_prompt.is_empty() {
        text.push_str(&format!("\nNegative prompt: {}", request.negative_prompt));
    }
    text.push_str(&format!(
        "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {}",
        request.steps,
        request.scheduler.a1111_name(),
        request.guidance_scale,
        request.seed,
        request.width,
        request.height,
        model.replace(',', " ")
    ));
    text
}

/// Encode `image` as PNG with the recipe chunks, recording how it was drawn (`drawn_at`: `f32`,
/// or `fast/<cpu class>`) when known. The same inputs give the same bytes.
pub fn encode(
    image: &RgbImage,
    request: &ImageRequest,
    model: &str,
    drawn_at: Option<&str>,
) -> Result<Vec<u8>, ImageFileError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Balanced);
        add_text(&mut encoder, PARAMETERS_KEY, &a1111_parameters(request, model))?;
        let mut recipe = serde_json::to_value(request).expect("a request serializes");
        if let Some(drawn_at) = drawn_at {
            recipe[PRECISION_KEY] = drawn_at.into();
        }
        let json = recipe.to_string();
        add_text(&mut encoder, REQUEST_KEY, &json)?;
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&image.pixels)?;
        writer.finish()?;
    }
    Ok(out)
}

/// Latin-1 text goes in `tEXt` (what every reader knows); anything else in UTF-8 `iTXt`.
fn add_text<W: std::io::Write>(
    encoder: &mut png::Encoder<'_, W>,
    key: &str,
    text: &str,
) -> Result<(), png::EncodingError> {
    if text.chars().all(|c| (c as u32) < 256 && c != '\0') {
        encoder.add_text_chunk(key.to_string(), text.to_string())
    } else {
        encoder.add_itxt_chunk(key.to_string(), text.to_string())
    }
}

/// The pixels and the recipe chunks of a PNG.
pub struct DecodedPng {
    pub image: RgbImage,
    pub texts: Vec<(String, String)>,
}

pub fn decode(bytes: &[u8]) -> Result<DecodedPng, ImageFileError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let frame = reader.next_frame(&mut buf)?;
    buf.truncate(frame.buffer_size());
    let pixels = match frame.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        png::ColorType::Indexed => return Err(ImageFileError::BadRequest("indexed PNGs are not supported".into())),
    };
    let info = reader.info();
    let mut texts: Vec<(String, String)> =
        info.uncompressed_latin1_text.iter().map(|t| (t.keyword.clone(), t.text.clone())).collect();
    texts.extend(info.utf8_text.iter().filter_map(|t| Some((t.keyword.clone(), t.get_text().ok()?))));
    Ok(DecodedPng { image: RgbImage { width: frame.width, height: frame.height, pixels }, texts })
}

/// The request a Duet PNG was made from.
pub fn read_request(bytes: &[u8]) -> Result<ImageRequest, ImageFileError> {
    let decoded = decode(bytes)?;
    let (_, json) = decoded.texts.iter().find(|(k, _)| k == REQUEST_KEY).ok_or(ImageFileError::NoRequest)?;
    serde_json::from_str(json).map_err(|e| ImageFileError::BadRequest(e.to_string()))
}

/// How the picture in `bytes` was drawn, when its recipe says.
pub fn read_precision(bytes: &[u8]) -> Result<Option<String>, ImageFileError> {
    let decoded = decode(bytes)?;
    let (_, json) = decoded.texts.iter().find(|(k, _)| k == REQUEST_KEY).ok_or(ImageFileError::NoRequest)?;
    let recipe: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ImageFileError::BadRequest(e.to_string()))?;
    Ok(recipe[PRECISION_KEY].as_str().map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::diffusion::scheduler::SchedulerKind;

    fn request(prompt: &str) -> ImageRequest {
        ImageRequest {
            prompt: prompt.into(),
            negative_prompt: "blurry".into(),
            steps: 20,
            guidance_scale: 7.5,
            width: 16,
            height: 8,
            seed: 1234,
            scheduler: SchedulerKind::EulerA,
        }
    }

    fn image() -> RgbImage {
        RgbImage { width: 16, height: 8, pixels: (0..16 * 8 * 3).map(|i| (i * 7 % 256) as u8).collect() }
    }

    #[test]
    fn parameters_follow_a1111() {
        assert_eq!(
            a1111_parameters(&request("a fox"), "sd-v1-5"),
            "a fox\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, \
             Size: 16x8, Model: sd-v1-5"
        );
        let mut no_negative = request("a fox");
        no_negative.negative_prompt.clear();
        no_negative.guidance_scale = 7.0;
        assert_eq!(
            a1111_parameters(&no_negative, "m"),
            "a fox\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 16x8, Model: m"
        );
    }

    #[test]
    fn round_trips_pixels_and_request_and_is_deterministic() {
        for prompt in ["a fox", "un renard roux, 雪の中"] {
            let bytes = encode(&image(), &request(prompt), "sd", Some("fast/amx")).unwrap();
            assert_eq!(bytes, encode(&image(), &request(prompt), "sd", Some("fast/amx")).unwrap());
            let decoded = decode(&bytes).unwrap();
            assert_eq!(decoded.image, image());
            let params = decoded.texts.iter().find(|(k, _)| k == PARAMETERS_KEY).unwrap();
            assert!(params.1.starts_with(prompt), "{params:?}");
            assert_eq!(read_request(&bytes).unwrap(), request(prompt));
            assert_eq!(read_precision(&bytes).unwrap().as_deref(), Some("fast/amx"));
        }
        let unknown = encode(&image(), &request("a fox"), "sd", None).unwrap();
        assert_eq!(read_precision(&unknown).unwrap(), None, "a recipe from before precision was recorded");
    }

    #[test]
    fn a_png_without_our_chunk_says_so() {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, 1, 1);
            encoder.set_color(png::ColorType::Rgb);
            encoder.write_header().unwrap().write_image_data(&[1, 2, 3]).unwrap();
        }
        assert!(matches!(read_request(&out), Err(ImageFileError::NoRequest)));
    }
}
