//! Reading NumPy `.npy` files (format versions 1–3, little-endian, C order): reference latents and
//! reference outputs from the Python stack, and `--latents` for reproducing other pipelines.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("not a .npy file: {0}")]
    Format(String),
    #[error("unsupported .npy content: {0}")]
    Unsupported(String),
}

/// An array of `f32` with its shape (row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn read_f32(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| NpyError::Io(path.display().to_string(), e))?;
    parse_f32(&bytes)
}

/// Parse `.npy` bytes holding `<f4`, `<f8` or `<f2` values into `f32`.
pub fn parse_f32(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::Format("missing \\x93NUMPY magic".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(NpyError::Unsupported(format!("format version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| NpyError::Format("truncated header".into()))?;
    let descr = header_value(header, "descr").ok_or_else(|| NpyError::Format("no descr".into()))?;
    if header_value(header, "fortran_order").as_deref() != Some("False") {
        return Err(NpyError::Unsupported("Fortran order".into()));
    }
    let shape = parse_shape(&header_value(header, "shape").ok_or_else(|| NpyError::Format("no shape".into()))?)?;
    let body = &bytes[start + header_len..];
    let count: usize = shape.iter().product();
    let data: Vec<f32> = match descr.trim_matches('\'') {
        "<f4" => chunks::<4>(body, count)?.map(f32::from_le_bytes).collect(),
        "<f8" => chunks::<8>(body, count)?.map(|b| f64::from_le_bytes(b) as f32).collect(),
        "<f2" => chunks::<2>(body, count)?.map(|b| f16_to_f32(u16::from_le_bytes(b))).collect(),
        other => return Err(NpyError::Unsupported(format!("dtype {other}"))),
    };
    Ok(NpyArray { shape, data })
}

fn chunks<const N: usize>(body: &[u8], count: usize) -> Result<impl Iterator<Item = [u8; N]> + '_, NpyError> {
    if body.len() < count * N {
        return Err(NpyError::Format(format!("expected {} data bytes, found {}", count * N, body.len())));
    }
    Ok(body[..count * N].chunks_exact(N).map(|c| c.try_into().expect("exact chunk")))
}

/// The text after `'key':` up to the next top-level comma or closing brace.
fn header_value(header: &str, key: &str) -> Option<String> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    let end = rest.char_indices().find(|&(_, c)| {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        depth == 0 && (c == ',' || c == '}')
    })?;
    let end = if rest.starts_with('(') { end.0.max(rest.find(')')? + 1) } else { end.0 };
    Some(rest[..end].trim().to_string())
}

fn parse_shape(text: &str) -> Result<Vec<usize>, NpyError> {
    let inner = text.trim().trim_start_matches('(').trim_end_matches(')');
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| NpyError::Format(format!("bad shape {text}"))))
        .collect()
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f32.powi(exp - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn reads_f4_with_shape() {
        let body: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0, 0.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let arr = parse_f32(&npy("<f4", "(1, 2, 3)", &body)).unwrap();
        assert_eq!(arr.shape, vec![1, 2, 3]);
        assert_eq!(arr.data, vec![1.5, -2.0, 0.25, 8.0, 0.0, 3.0]);
    }

    #[test]
    fn reads_f8_f2_and_vectors() {
        let body: Vec<u8> = [0.5f64, -4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(parse_f32(&npy("<f8", "(2,)", &body)).unwrap().data, vec![0.5, -4.0]);
        // 0x3c00 = 1.0, 0xc000 = -2.0, 0x3555 ≈ 0.333 in IEEE half precision.
        let body: Vec<u8> = [0x3c00u16, 0xc000, 0x3555].iter().flat_map(|v| v.to_le_bytes()).collect();
        let arr = parse_f32(&npy("<f2", "(3,)", &body)).unwrap();
        assert_eq!(&arr.data[..2], &[1.0, -2.0]);
        assert!((arr.data[2] - 0.33325).abs() < 1e-4);
    }

    #[test]
    fn rejects_wrong_files() {
        assert!(matches!(parse_f32(b"PNG...."), Err(NpyError::Format(_))));
        let err = parse_f32(&npy("<i8", "(1,)", &[0; 8])).unwrap_err().to_string();
        assert!(err.contains("dtype <i8"), "{err}");
        let err = parse_f32(&npy("<f4", "(4,)", &[0; 8])).unwrap_err().to_string();
        assert!(err.contains("expected 16 data bytes"), "{err}");
    }
}
