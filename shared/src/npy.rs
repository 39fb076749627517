//! NPY v1.0 for the vector routing artifacts (`centroids.npy`, `hyperplanes.npy`): a 2-D,
//! C-ordered, little-endian float array. float64 files are accepted and narrowed to f32.

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// A row-major matrix of f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows (centroids, hyperplanes).
    pub rows: usize,
    /// Number of columns (the vectors' dimension).
    pub cols: usize,
    /// `rows * cols` values, row after row.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `i`. Panics when `i >= rows`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// A routing artifact (centroids, hyperplanes) of `cols` = the vectors' dimension, every
    /// value finite and no row all zeros: a NaN or zero row would route every query to one
    /// shard instead of failing.
    pub fn check_routing_artifact(&self, dim: usize) -> Result<()> {
        if self.cols != dim {
            return Err(Error::InvalidNpy(format!(
                "shape ({}, {}) but the vectors have dim {dim}",
                self.rows, self.cols
            )));
        }
        for i in 0..self.rows {
            let row = self.row(i);
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(Error::InvalidNpy(format!(
                    "row {i} column {j} is {} (routing vectors must be finite)",
                    row[j]
                )));
            }
            if row.iter().all(|v| *v == 0.0) {
                return Err(Error::InvalidNpy(format!("row {i} is all zeros")));
            }
        }
        Ok(())
    }
}

/// Parses an NPY file (format version 1, 2 or 3) holding a 2-D, C-ordered, little-endian
/// float32 or float64 array (float64 narrowed to f32); anything else is [`Error::InvalidNpy`].
pub fn read(bytes: &[u8]) -> Result<Matrix> {
    let bad = |why: &str| Error::InvalidNpy(why.to_string());
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing \\x93NUMPY magic"));
    }
    let (major, header_len, header_start) = match bytes[6] {
        1 => (1, u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            bytes[6],
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(Error::InvalidNpy(format!("unsupported version {v}"))),
    };
    let _ = major;
    let header_end = header_start + header_len;
    let header = bytes
        .get(header_start..header_end)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("header is truncated or not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad("header has no 'descr'"))?;
    let width = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f4" => 4,
        "<f8" => 8,
        other => {
            return Err(Error::InvalidNpy(format!(
                "dtype {other} is not little-endian float32/float64"
            )))
        }
    };
    if dict_value(header, "fortran_order").map(str::trim) != Some("False") {
        return Err(bad("only C-ordered arrays are supported"));
    }
    let shape = dict_value(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad("shape is not a tuple of integers"))
        })
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        return Err(Error::InvalidNpy(format!(
            "expected a 2-D array, shape is {shape}"
        )));
    };
    let body = &bytes[header_end..];
    let want = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| bad("shape overflows"))?;
    if body.len() != want {
        return Err(Error::InvalidNpy(format!(
            "data is {} bytes, shape ({rows}, {cols}) needs {want}",
            body.len()
        )));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect()
    };
    Ok(Matrix { rows, cols, data })
}

/// Writes NPY v1.0 `<f4`, header padded so the data starts at a multiple of 64 bytes.
pub fn write(matrix: &Matrix) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        matrix.rows, matrix.cols
    );
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + matrix.data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &matrix.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The text after `'key':` in a Python dict literal, up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}':"))? + key.len() + 3;
    let rest = &header[start..];
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Matrix {
            rows: 2,
            cols: 3,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        let bytes = write(&m);
        assert_eq!((bytes.len() - 24) % 64, 0, "data is 64-byte aligned");
        assert_eq!(read(&bytes).unwrap(), m);
        assert_eq!(read(&bytes).unwrap().row(1), [4.0, 5.0, 6.0]);
    }

    #[test]
    fn reads_numpy_float64_header() {
        // Header as numpy 1.x writes it for np.zeros((1, 2)).
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let padded = format!("{header:<117}\n");
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        bytes.extend_from_slice(&(-2.0f64).to_le_bytes());
        let m = read(&bytes).unwrap();
        assert_eq!((m.rows, m.cols, m.data), (1, 2, vec![1.5, -2.0]));
    }

    #[test]
    fn rejects_bad_files() {
        let m = Matrix {
            rows: 2,
            cols: 2,
            data: vec![0.0; 4],
        };
        let mut bytes = write(&m);
        bytes.pop();
        assert!(read(&bytes).unwrap_err().to_string().contains("needs 16"));
        assert!(read(b"PK\x03\x04 not numpy").is_err());
        let mut big_endian = write(&m);
        let at = big_endian.windows(3).position(|w| w == b"<f4").unwrap();
        big_endian[at] = b'>';
        assert!(read(&big_endian).unwrap_err().to_string().contains(">f4"));
    }

    #[test]
    fn routing_artifacts_must_be_finite_and_non_zero() {
        let m = |data: Vec<f32>| Matrix {
            rows: 2,
            cols: 2,
            data,
        };
        assert!(m(vec![1.0, 0.0, 0.0, 1.0])
            .check_routing_artifact(2)
            .is_ok());
        assert!(m(vec![1.0, 0.0, 0.0, 1.0])
            .check_routing_artifact(3)
            .is_err());
        assert!(m(vec![f32::NAN, 0.0, 0.0, 1.0])
            .check_routing_artifact(2)
            .is_err());
        assert!(m(vec![1.0, 0.0, f32::INFINITY, 1.0])
            .check_routing_artifact(2)
            .is_err());
        assert!(m(vec![1.0, 0.0, 0.0, 0.0])
            .check_routing_artifact(2)
            .is_err());
    }
}
