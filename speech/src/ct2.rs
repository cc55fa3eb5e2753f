//! Reader for CTranslate2's `model.bin`, the weight file of faster-whisper
//! models.
//!
//! The layout (little-endian; written by CTranslate2's Python converter, read
//! by its C++ loader):
//!
//! ```text
//! u32 binary_version                      (1 ..= 6 are understood here)
//! string spec_name, u32 spec_revision     (binary_version >= 2)
//! u32 n_variables
//! n_variables times:
//!     string name
//!     u8 rank, rank × u32 dims
//!     binary_version >= 4: u8 dtype id, u32 byte count
//!     binary_version <  4: u8 item size, u32 element count
//!     the data, byte count bytes, row-major
//! u32 n_aliases, n_aliases times: string alias, string target   (binary_version >= 3)
//! ```
//!
//! A string is a u16 length followed by that many bytes, the last of which is
//! a NUL. Dtype ids: 0 f32, 1 int8, 2 int16, 3 int32, 4 f16, 5 bf16. Quantized
//! weights (int8, int16) come with a float variable `<name>_scale`; the real
//! value is `q / scale` (one scale per row, i.e. per index of the first
//! dimension, or one for the whole tensor).
//!
//! The file is memory-mapped; variables are converted to f32 on request
//! ([`Ct2Model::tensor_f32`]) or read as raw bytes ([`Ct2Model::raw`]).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

mod error;
pub use error::{ByteCount, Ct2Error, Result};

/// The newest `model.bin` binary version this reader understands.
pub const MAX_BINARY_VERSION: u32 = 6;

/// The element type of a variable, as CTranslate2 numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float (id 0).
    F32,
    /// 8-bit signed integer, a quantized weight or a small scalar (id 1).
    I8,
    /// 16-bit signed integer (id 2).
    I16,
    /// 32-bit signed integer (id 3).
    I32,
    /// IEEE half precision (id 4).
    F16,
    /// bfloat16 (id 5).
    BF16,
}

impl DType {
    /// The dtype of a CTranslate2 type id (binary version 4 and later).
    pub fn from_id(id: u8) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    /// The CTranslate2 type id.
    pub fn id(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::I8 => 1,
            DType::I16 => 2,
            DType::I32 => 3,
            DType::F16 => 4,
            DType::BF16 => 5,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }

    /// Whether the type is a float type (no scale needed).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// The dtype implied by an item size (binary versions before 4).
    fn from_item_size(size: u8) -> Option<DType> {
        Some(match size {
            4 => DType::F32,
            2 => DType::I16,
            1 => DType::I8,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "float32",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        })
    }
}

/// One stored variable: its name, shape, dtype and where its data lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    offset: usize,
    num_bytes: usize,
}

impl Variable {
    /// The variable's name, e.g. `encoder/conv1/weight`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its shape (empty for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Its element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements (1 for a scalar).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data in the file.
    pub fn num_bytes(&self) -> usize {
        self.num_bytes
    }

    /// Offset of the data in the file.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// An open CTranslate2 `model.bin`: the header, the variables and the
/// aliases, with the data memory-mapped.
pub struct Ct2Model {
    path: PathBuf,
    data: Mmap,
    binary_version: u32,
    spec_name: String,
    spec_revision: u32,
    variables: Vec<Variable>,
    /// Variable and alias names → index into `variables`.
    index: HashMap<String, usize>,
    /// Aliases as stored: (alias, target).
    aliases: Vec<(String, String)>,
}

impl fmt::Debug for Ct2Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ct2Model")
            .field("path", &self.path)
            .field("binary_version", &self.binary_version)
            .field("spec_name", &self.spec_name)
            .field("spec_revision", &self.spec_revision)
            .field("variables", &self.variables.len())
            .field("aliases", &self.aliases.len())
            .finish()
    }
}

/// A cursor over the mapped bytes that reports truncation with the file name.
struct Cursor<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Ct2Error::Truncated {
                path: self.path.to_path_buf(),
                what: what(),
                offset: self.pos,
                needed: n,
                len: self.data.len(),
            }),
        }
    }

    fn u8(&mut self, what: impl FnOnce() -> String) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: impl FnOnce() -> String) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A u16-length-prefixed string; the text ends at the first NUL.
    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u16(|| format!("the length of {what}"))? as usize;
        let offset = self.pos;
        let bytes = self.take(len, || what.to_string())?;
        let bytes = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
        String::from_utf8(bytes.to_vec()).map_err(|_| Ct2Error::Utf8 {
            path: self.path.to_path_buf(),
            what: what.to_string(),
            offset,
        })
    }
}

impl Ct2Model {
    /// Opens and parses `path` (a `model.bin`), checking every variable's
    /// byte count against its shape and dtype and resolving the aliases.
    pub fn open(path: impl AsRef<Path>) -> Result<Ct2Model> {
        let path = path.as_ref().to_path_buf();
        let io = |source| Ct2Error::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 4 {
            return Err(Ct2Error::Truncated {
                path,
                what: "the binary version".into(),
                offset: 0,
                needed: 4,
                len: len as usize,
            });
        }
        // SAFETY: the map is read-only and models are installed by renaming a
        // finished folder into place, never rewritten where they lie; a file
        // truncated underneath the map by someone else is outside our contract.
        let data = unsafe { Mmap::map(&file) }.map_err(io)?;
        let mut model = Ct2Model {
            path,
            data,
            binary_version: 0,
            spec_name: String::new(),
            spec_revision: 1,
            variables: Vec::new(),
            index: HashMap::new(),
            aliases: Vec::new(),
        };
        model.parse()?;
        Ok(model)
    }

    fn parse(&mut self) -> Result<()> {
        let path = self.path.as_path();
        let mut c = Cursor {
            path,
            data: &self.data[..],
            pos: 0,
        };
        let version = c.u32(|| "the binary version".into())?;
        if version == 0 || version > MAX_BINARY_VERSION {
            return Err(Ct2Error::Version {
                path: path.to_path_buf(),
                version,
            });
        }
        self.binary_version = version;
        if version >= 2 {
            self.spec_name = c.string("the spec name")?;
            self.spec_revision = c.u32(|| "the spec revision".into())?;
        }
        let n = c.u32(|| "the number of variables".into())? as usize;
        // Each variable takes at least 8 bytes: never trust n for a huge allocation.
        let mut variables = Vec::with_capacity(n.min(c.data.len() / 8));
        let mut index = HashMap::with_capacity(variables.capacity());
        for i in 0..n {
            let name = c.string(&format!("the name of variable {i}"))?;
            let rank = c.u8(|| format!("the rank of {name:?}"))? as usize;
            let mut shape = Vec::with_capacity(rank);
            for d in 0..rank {
                shape.push(c.u32(|| format!("dimension {d} of {name:?}"))? as usize);
            }
            let (dtype, num_bytes) = if version >= 4 {
                let id = c.u8(|| format!("the type of {name:?}"))?;
                let dtype = DType::from_id(id).ok_or_else(|| Ct2Error::DType {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    what: format!("type id {id}"),
                })?;
                (dtype, c.u32(|| format!("the byte count of {name:?}"))? as usize)
            } else {
                let size = c.u8(|| format!("the item size of {name:?}"))?;
                let dtype = DType::from_item_size(size).ok_or_else(|| Ct2Error::DType {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    what: format!("item size {size}"),
                })?;
                let count = c.u32(|| format!("the element count of {name:?}"))? as usize;
                (dtype, count.saturating_mul(size as usize))
            };
            let expected = shape.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
            if expected != Some(num_bytes) {
                return Err(Ct2Error::Size {
                    path: path.to_path_buf(),
                    name,
                    shape,
                    dtype,
                    expected: ByteCount(expected),
                    actual: num_bytes,
                });
            }
            let offset = c.pos;
            c.take(num_bytes, || format!("the data of {name:?}"))?;
            if index.insert(name.clone(), variables.len()).is_some() {
                return Err(Ct2Error::Duplicate {
                    path: path.to_path_buf(),
                    name,
                });
            }
            variables.push(Variable {
                name,
                shape,
                dtype,
                offset,
                num_bytes,
            });
        }
        let mut aliases = Vec::new();
        if version >= 3 {
            let n = c.u32(|| "the number of aliases".into())? as usize;
            for i in 0..n {
                let alias = c.string(&format!("alias {i}"))?;
                let target = c.string(&format!("the target of alias {alias:?}"))?;
                let Some(&at) = index.get(&target) else {
                    return Err(Ct2Error::DanglingAlias {
                        path: path.to_path_buf(),
                        alias,
                        target,
                    });
                };
                if index.insert(alias.clone(), at).is_some() {
                    return Err(Ct2Error::Duplicate {
                        path: path.to_path_buf(),
                        name: alias,
                    });
                }
                // As CTranslate2 does: an alias of a quantized weight also
                // aliases its scale.
                for suffix in ["_scale", "_zero"] {
                    if let Some(&s) = index.get(&format!("{target}{suffix}")) {
                        index.entry(format!("{alias}{suffix}")).or_insert(s);
                    }
                }
                aliases.push((alias, target));
            }
        }
        if c.pos != c.data.len() {
            return Err(Ct2Error::Trailing {
                path: path.to_path_buf(),
                extra: c.data.len() - c.pos,
            });
        }
        self.variables = variables;
        self.index = index;
        self.aliases = aliases;
        Ok(())
    }

    /// The file this model was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The binary version of the file (1 ..= [`MAX_BINARY_VERSION`]).
    pub fn binary_version(&self) -> u32 {
        self.binary_version
    }

    /// The model specification, e.g. `WhisperSpec` (empty before version 2).
    pub fn spec_name(&self) -> &str {
        &self.spec_name
    }

    /// The specification revision (1 before version 2).
    pub fn spec_revision(&self) -> u32 {
        self.spec_revision
    }

    /// The stored variables, in file order (aliases are not repeated here).
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// The aliases as stored: `(alias, target)`.
    pub fn aliases(&self) -> &[(String, String)] {
        &self.aliases
    }

    /// The variable called `name`, following aliases; `None` when absent.
    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.index.get(name).map(|&i| &self.variables[i])
    }

    /// Whether a variable or alias is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Number of weights: the elements of every non-scalar variable, not
    /// counting quantization scales; aliased variables count once.
    pub fn parameter_count(&self) -> usize {
        self.variables
            .iter()
            .filter(|v| !v.shape.is_empty() && !v.name.ends_with("_scale"))
            .map(Variable::num_elements)
            .sum()
    }

    /// The variable `name` (following aliases) and its raw little-endian bytes.
    pub fn raw(&self, name: &str) -> Result<(&Variable, &[u8])> {
        let v = self.variable(name).ok_or_else(|| Ct2Error::Missing {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        Ok((v, &self.data[v.offset..v.offset + v.num_bytes]))
    }

    /// The variable `name` (following aliases) as f32: its shape and its
    /// values in row-major order. Floats are widened; int8/int16 weights are
    /// dequantized with `<name>_scale` (`q / scale`, per row or global);
    /// integer scalars and int32 tensors without a scale are plain numbers.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let (v, bytes) = self.raw(name)?;
        let values = match v.dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::I8 => self.dequantize(name, v, bytes.iter().map(|&b| b as i8 as f32).collect())?,
            DType::I16 => self.dequantize(
                name,
                v,
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)
                    .collect(),
            )?,
            DType::I32 => bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
        };
        Ok((v.shape.clone(), values))
    }

    /// Divides quantized values by their scale `<name>_scale`.
    fn dequantize(&self, name: &str, v: &Variable, mut q: Vec<f32>) -> Result<Vec<f32>> {
        let scale_name = format!("{name}_scale");
        let problem = |problem: String| Ct2Error::Scale {
            path: self.path.clone(),
            name: name.to_string(),
            dtype: v.dtype,
            shape: v.shape.clone(),
            problem,
        };
        let Some(scale_var) = self.variable(&scale_name) else {
            if v.shape.is_empty() {
                return Ok(q); // an integer scalar (a flag or a count), not a weight
            }
            return Err(problem(format!("there is no variable {scale_name:?}")));
        };
        if !scale_var.dtype.is_float() {
            return Err(problem(format!("{scale_name:?} is {}, not a float", scale_var.dtype)));
        }
        let (_, scale) = self.tensor_f32(&scale_name)?;
        let rows = v.shape.first().copied().unwrap_or(1);
        if scale.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return Err(problem(format!("{scale_name:?} holds a zero or non-finite value")));
        }
        if scale.len() == 1 {
            q.iter_mut().for_each(|x| *x /= scale[0]);
        } else if scale.len() == rows && rows > 0 {
            let per_row = q.len() / rows;
            for (row, s) in q.chunks_exact_mut(per_row.max(1)).zip(&scale) {
                row.iter_mut().for_each(|x| *x /= s);
            }
        } else {
            return Err(problem(format!(
                "{scale_name:?} has {} values, expected 1 or {rows} (one per row)",
                scale.len()
            )));
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
