//! The host's diagnosis appended to "Unrecognized remote plugin message":
//! the usual causes, then notes about the plugin file (path, mode, owner,
//! group, and the ELF architecture against the current one), formatted as
//! go-plugin's command runner formats them.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

const USUALLY: &str = "This usually means\n  the plugin was not compiled for this architecture,\n  the plugin is missing dynamic-link libraries necessary to run,\n  the plugin is not executable by this process due to file permissions, or\n  the plugin failed to negotiate the initial go-plugin protocol handshake\n";

/// The diagnosis for the program at `path` (as resolved from `PATH`).
pub fn diagnose(path: &Path) -> String {
    let mut notes = USUALLY.to_owned();
    notes.push_str(&additional_notes(path));
    notes
}

/// Resolves a program name through `PATH` the way `exec.LookPath` does.
pub fn look_path(program: &str) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from(program)
}

fn additional_notes(path: &Path) -> String {
    let Ok(meta) = std::fs::metadata(path) else {
        return String::new();
    };
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let gid = std::fs::metadata("/proc/self")
        .map(|m| m.gid())
        .unwrap_or(0);
    let mut notes = String::from("\nAdditional notes about plugin:\n");
    notes.push_str(&format!("  Path: {}\n", path.display()));
    notes.push_str(&format!("  Mode: {}\n", go_mode(meta.mode())));
    notes.push_str(&format!(
        "  Owner: {} [{}] (current: {uid} [{}])\n",
        meta.uid(),
        name_of("/etc/passwd", meta.uid()),
        name_of("/etc/passwd", uid)
    ));
    notes.push_str(&format!(
        "  Group: {} [{}] (current: {gid} [{}])\n",
        meta.gid(),
        name_of("/etc/group", meta.gid()),
        name_of("/etc/group", gid)
    ));
    if let Some(machine) = elf_machine(path) {
        notes.push_str(&format!(
            "  ELF architecture: {machine} (current architecture: {})\n",
            go_arch()
        ));
    }
    notes
}

/// Go's `FileMode.String()` for the type bits and permissions.
fn go_mode(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'L',
        0o140000 => 'S',
        0o010000 => 'p',
        0o020000 => 'D',
        _ => '-',
    };
    let mut s = String::new();
    if kind != '-' {
        s.push(kind);
    }
    if mode & 0o4000 != 0 {
        s.push('u');
    }
    if mode & 0o2000 != 0 {
        s.push('g');
    }
    if mode & 0o1000 != 0 {
        s.push('t');
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

/// A user or group name from a passwd-format file, `?` when unknown.
fn name_of(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == id.to_string()).then(|| f[0].to_owned())
            })
        })
        .unwrap_or_else(|| "?".into())
}

/// The ELF `e_machine` name Go prints, when the file is ELF.
fn elf_machine(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if head[..4] != *b"\x7fELF" {
        return None;
    }
    let raw = [head[18], head[19]];
    let machine = if head[5] == 2 {
        u16::from_be_bytes(raw)
    } else {
        u16::from_le_bytes(raw)
    };
    Some(
        match machine {
            3 => "EM_386",
            8 => "EM_MIPS",
            20 => "EM_PPC",
            21 => "EM_PPC64",
            22 => "EM_S390",
            40 => "EM_ARM",
            62 => "EM_X86_64",
            183 => "EM_AARCH64",
            243 => "EM_RISCV",
            258 => "EM_LOONGARCH",
            _ => return Some(machine.to_string()),
        }
        .to_owned(),
    )
}

/// `runtime.GOARCH` for the architecture plugtap was built for.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_as_go_prints_them() {
        assert_eq!(go_mode(0o100755), "-rwxr-xr-x");
        assert_eq!(go_mode(0o100644), "-rw-r--r--");
        assert_eq!(go_mode(0o040700), "drwx------");
        assert_eq!(go_mode(0o104755), "urwxr-xr-x");
    }
}
