//! Editing a safetensors file in place, to make broken models out of good fixtures.

use std::path::Path;

/// Sets every element of the f32 tensor `name` in a safetensors file to `value`.
pub fn fill_tensor(path: &Path, name: &str, value: f32) {
    let mut bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let offsets = &header[name]["data_offsets"];
    let (begin, end) = (offsets[0].as_u64().unwrap() as usize, offsets[1].as_u64().unwrap() as usize);
    for element in bytes[8 + header_len + begin..8 + header_len + end].chunks_exact_mut(4) {
        element.copy_from_slice(&value.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}
