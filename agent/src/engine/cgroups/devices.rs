//! The device controller: OCI `linux.resources.devices` rules as v1 `devices.allow`/`deny`
//! lines, and as a cgroup v2 `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! Semantics (the same on v1 and v2): rules apply in order and a later rule overrides an
//! earlier one for the accesses it matches; an access no rule matches is allowed, as in a new
//! v1 devices cgroup under an unrestricted parent. A default-deny list therefore starts with a
//! deny-all rule (`{"allow": false, "access": "rwm"}`), which is what runtimes generate.
//!
//! Why the eBPF program is assembled by hand: the program is a straight line of at most
//! 6 instructions per rule (the same shape runc's `libcontainer/cgroups/devices/devicefilter`
//! emits), the available crates (aya, libbpf-rs, rbpf) bring a loader framework, a C toolchain
//! (libbpf/clang) or an interpreter we do not need, and the two syscalls involved
//! (`BPF_PROG_LOAD`, `BPF_PROG_ATTACH`, see bpf(2) and include/uapi/linux/bpf.h) take a fixed
//! struct each. The generated program is unit-tested instruction by instruction and, as root,
//! against the kernel verifier and a real `open("/dev/null")`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// A rule normalised from the spec: type 'a', 'b' or 'c', None for a wildcard number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub typ: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// A subset of "rwm", in that order.
    pub access: String,
}

impl DeviceRule {
    /// Validates and normalises one spec rule.
    pub fn from_spec(r: &LinuxDeviceCgroup, index: usize) -> Result<Self, CgroupError> {
        let field = || format!("linux.resources.devices[{index}]");
        let typ = match r.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::B) => 'b',
            // Unbuffered character devices are character devices to the kernel.
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
            Some(LinuxDeviceType::P) => {
                return Err(CgroupError::unsupported(
                    field(),
                    "the device controller has no rules for FIFOs (type \"p\")",
                ))
            }
        };
        for (n, name) in [(r.major(), "major"), (r.minor(), "minor")] {
            if let Some(v) = n {
                if !(0..=u32::MAX as i64).contains(&v) {
                    return Err(CgroupError::invalid(
                        format!("{}.{name}", field()),
                        format!("{v} is not a device number"),
                    ));
                }
            }
        }
        let given = r.access().as_deref().unwrap_or("rwm");
        if given.is_empty() || given.chars().any(|c| !"rwm".contains(c)) {
            return Err(CgroupError::invalid(
                format!("{}.access", field()),
                format!("{given:?} is not a combination of r, w and m"),
            ));
        }
        let access: String = "rwm".chars().filter(|c| given.contains(*c)).collect();
        Ok(DeviceRule {
            allow: r.allow(),
            typ,
            major: r.major(),
            minor: r.minor(),
            access,
        })
    }

    /// The v1 line, "c 1:3 rwm" (wildcards as '*').
    pub fn v1_line(&self) -> String {
        let n = |v: Option<i64>| v.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.typ,
            n(self.major),
            n(self.minor),
            self.access
        )
    }

    /// Matches every device with every access.
    pub fn is_all(&self) -> bool {
        self.typ == 'a' && self.major.is_none() && self.minor.is_none() && self.access == "rwm"
    }
}

/// Normalises every rule of the spec.
pub fn rules(spec: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, CgroupError> {
    spec.iter()
        .enumerate()
        .map(|(i, r)| DeviceRule::from_spec(r, i))
        .collect()
}

/// The v1 writes for a rule list, as (file, line) in order. A list that starts with deny-all
/// writes "a" to devices.deny first (which also drops every inherited allow entry, as runc
/// does for a default-deny list) and the remaining rules after it.
pub fn v1_writes(rules: &[DeviceRule]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut rest = rules;
    if let Some((first, tail)) = rules.split_first() {
        if !first.allow && first.is_all() {
            out.push(("devices.deny", "a".to_string()));
            rest = tail;
        }
    }
    for r in rest {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let line = if r.is_all() {
            "a".to_string()
        } else {
            r.v1_line()
        };
        out.push((file, line));
    }
    out
}

// ---- eBPF -----------------------------------------------------------------------------------

/// One `struct bpf_insn` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble (little-endian bitfields).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes: class | op | source.
const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const BPF_ALU_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_ALU_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const BPF_ALU_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const BPF_ALU_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const BPF_JMP32_JNE_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const BPF_JMP32_JNE_X: u8 = 0x5e; // BPF_JMP32 | BPF_JNE | BPF_X
const BPF_JMP32_JEQ_K: u8 = 0x16; // BPF_JMP32 | BPF_JEQ | BPF_K
const BPF_JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }, where access_type is
// (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (dst & 0x0f) | (src << 4),
        off,
        imm,
    }
}

/// Builds the device filter program for `rules`.
///
/// Registers after the prologue: R2 = device type, R3 = requested access bits, R4 = major,
/// R5 = minor. Rules are checked last to first, so the first block that matches is the rule
/// that wins in list order; each block falls through to the next when a field differs and
/// otherwise returns its verdict. No match returns 1 (allow).
pub fn build_program(rules: &[DeviceRule]) -> Vec<BpfInsn> {
    let mut prog = vec![
        insn(BPF_LDX_MEM_W, R2, R1, 0, 0),
        insn(BPF_ALU_AND_K, R2, 0, 0, 0xffff),
        insn(BPF_LDX_MEM_W, R3, R1, 0, 0),
        insn(BPF_ALU_RSH_K, R3, 0, 0, 16),
        insn(BPF_LDX_MEM_W, R4, R1, 4, 0),
        insn(BPF_LDX_MEM_W, R5, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // Each entry: (instruction, jumps to the end of the block when a field differs).
        let mut block: Vec<(BpfInsn, bool)> = Vec::new();
        match rule.typ {
            'b' => block.push((insn(BPF_JMP32_JNE_K, R2, 0, 0, DEV_BLOCK), true)),
            'c' => block.push((insn(BPF_JMP32_JNE_K, R2, 0, 0, DEV_CHAR), true)),
            _ => {}
        }
        if rule.access != "rwm" {
            let mut bits = 0;
            for c in rule.access.chars() {
                bits |= match c {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    _ => ACC_MKNOD,
                };
            }
            // One open asks for several bits at once (O_RDWR: read|write). An allow rule
            // matches only when it covers all of them ((R3 & bits) == R3); a deny rule
            // matches when it covers any of them ((R3 & bits) != 0), as v1's devices
            // controller refuses an access of which any part is denied.
            block.push((insn(BPF_ALU_MOV_X, R1, R3, 0, 0), false));
            block.push((insn(BPF_ALU_AND_K, R1, 0, 0, bits), false));
            if rule.allow {
                block.push((insn(BPF_JMP32_JNE_X, R1, R3, 0, 0), true));
            } else {
                block.push((insn(BPF_JMP32_JEQ_K, R1, 0, 0, 0), true));
            }
        }
        if let Some(m) = rule.major {
            block.push((insn(BPF_JMP32_JNE_K, R4, 0, 0, m as u32 as i32), true));
        }
        if let Some(m) = rule.minor {
            block.push((insn(BPF_JMP32_JNE_K, R5, 0, 0, m as u32 as i32), true));
        }
        block.push((insn(BPF_ALU_MOV_K, R0, 0, 0, i32::from(rule.allow)), false));
        block.push((insn(BPF_JMP_EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        let unconditional = len == 2;
        for (i, (mut ins, jumps)) in block.into_iter().enumerate() {
            if jumps {
                // Offsets count from the next instruction; land on the first of the next block.
                ins.off = (len - i - 1) as i16;
            }
            prog.push(ins);
        }
        if unconditional {
            // A rule matching everything decides every access: anything after it would be
            // unreachable, which the verifier rejects (EINVAL).
            return prog;
        }
    }
    prog.push(insn(BPF_ALU_MOV_K, R0, 0, 0, 1));
    prog.push(insn(BPF_JMP_EXIT, 0, 0, 0, 0));
    prog
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> libc::c_long {
    // SAFETY: `attr` is a live, initialised #[repr(C)] struct laid out as the prefix of
    // `union bpf_attr` this command reads, and the size passed is exactly its size; the kernel
    // zero-extends the rest. Pointers inside it (insns, license, log_buf) are set by the
    // caller to buffers that outlive this call.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    }
}

/// Loads `prog` into the kernel; on a verifier rejection the error carries the verifier log.
pub fn load_program(prog: &[BpfInsn]) -> Result<OwnedFd, CgroupError> {
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"minid_dev");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    let mut fd = bpf(BPF_PROG_LOAD, &mut attr);
    if fd < 0 && matches!(nix::Error::last(), nix::Error::EACCES | nix::Error::EINVAL) {
        // Retry with the verifier log so the error says why.
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        fd = bpf(BPF_PROG_LOAD, &mut attr);
    }
    if fd < 0 {
        let errno = nix::Error::last();
        let end = log.iter().position(|&b| b == 0).unwrap_or(0);
        let msg = String::from_utf8_lossy(&log[..end]).trim().to_string();
        return Err(CgroupError::Sys {
            op: if msg.is_empty() {
                "load the device filter program (bpf BPF_PROG_LOAD)".to_string()
            } else {
                format!("load the device filter program (verifier: {msg})")
            },
            source: errno,
        });
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches a loaded program to the cgroup open as `cgroup_fd` (BPF_F_ALLOW_MULTI: programs of
/// ancestors and earlier programs stay in force; an access must pass all of them).
pub fn attach_program(cgroup_fd: &OwnedFd, prog_fd: &OwnedFd) -> Result<(), CgroupError> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup_fd.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    if bpf(BPF_PROG_ATTACH, &mut attr) < 0 {
        return Err(CgroupError::Sys {
            op: "attach the device filter program (bpf BPF_PROG_ATTACH)".to_string(),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

/// The `BPF_PROG_QUERY` member of `union bpf_attr`, up to `prog_cnt`.
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// The `BPF_*_GET_FD_BY_ID` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The ids of the device programs attached directly to the cgroup (not its ancestors').
pub fn attached_programs(cgroup_fd: &OwnedFd) -> Result<Vec<u32>, CgroupError> {
    let mut ids = vec![0u32; 64];
    let mut attr = ProgQueryAttr {
        target_fd: cgroup_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    if bpf(BPF_PROG_QUERY, &mut attr) < 0 {
        return Err(CgroupError::Sys {
            op: "list the attached device filter programs (bpf BPF_PROG_QUERY)".to_string(),
            source: nix::Error::last(),
        });
    }
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// Detaches the program with id `id` from the cgroup.
pub fn detach_program(cgroup_fd: &OwnedFd, id: u32) -> Result<(), CgroupError> {
    let mut by_id = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut by_id);
    if fd < 0 {
        return Err(CgroupError::Sys {
            op: format!("open device filter program {id} (bpf BPF_PROG_GET_FD_BY_ID)"),
            source: nix::Error::last(),
        });
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut attr = ProgAttachAttr {
        target_fd: cgroup_fd.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    if bpf(BPF_PROG_DETACH, &mut attr) < 0 {
        return Err(CgroupError::Sys {
            op: format!("detach device filter program {id} (bpf BPF_PROG_DETACH)"),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// Replaces the device filter of the cgroup open as `cgroup_fd` with one built from `rules`:
/// the new program is attached before the old ones are detached, so there is no moment
/// without a filter (for that moment both apply, which is only ever stricter).
pub fn replace_program(cgroup_fd: &OwnedFd, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let old = attached_programs(cgroup_fd)?;
    let prog = load_program(&build_program(rules))?;
    attach_program(cgroup_fd, &prog)?;
    for id in old {
        detach_program(cgroup_fd, id)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn spec(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    const DEFAULT_DENY: &str = r#"[
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rw"},
        {"allow": false, "type": "b", "major": 8, "minor": 0, "access": "m"}
    ]"#;

    #[test]
    fn v1_lines_default_deny() {
        let r = rules(&spec(DEFAULT_DENY)).unwrap();
        assert_eq!(
            v1_writes(&r),
            vec![
                ("devices.deny", "a".to_string()),
                ("devices.allow", "c 1:3 rwm".to_string()),
                ("devices.allow", "c 136:* rw".to_string()),
                ("devices.deny", "b 8:0 m".to_string()),
            ]
        );
    }

    #[test]
    fn v1_lines_default_allow_and_normalisation() {
        let r = rules(&spec(
            r#"[{"allow": false, "type": "u", "major": 1, "minor": 5, "access": "wr"},
                {"allow": true, "access": "rwm"}]"#,
        ))
        .unwrap();
        assert_eq!(
            v1_writes(&r),
            vec![
                ("devices.deny", "c 1:5 rw".to_string()),
                ("devices.allow", "a".to_string()),
            ]
        );
    }

    #[test]
    fn invalid_rules_are_refused() {
        let e = rules(&spec(r#"[{"allow": true, "type": "p"}]"#)).unwrap_err();
        assert!(e.to_string().contains("devices[0]"), "{e}");
        let e = rules(&spec(r#"[{"allow": true, "access": "rx"}]"#)).unwrap_err();
        assert!(e.to_string().contains("devices[0].access"), "{e}");
        assert!(rules(&spec(r#"[{"allow": true, "major": -1}]"#)).is_err());
    }

    #[test]
    fn program_shape() {
        let r = rules(&spec(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]"#,
        ))
        .unwrap();
        let p = build_program(&r);
        let expect = vec![
            // prologue
            insn(BPF_LDX_MEM_W, R2, R1, 0, 0),
            insn(BPF_ALU_AND_K, R2, 0, 0, 0xffff),
            insn(BPF_LDX_MEM_W, R3, R1, 0, 0),
            insn(BPF_ALU_RSH_K, R3, 0, 0, 16),
            insn(BPF_LDX_MEM_W, R4, R1, 4, 0),
            insn(BPF_LDX_MEM_W, R5, R1, 8, 0),
            // last rule first: c 1:3 rw allow (8 instructions, 6..=13)
            insn(BPF_JMP32_JNE_K, R2, 0, 7, DEV_CHAR),
            insn(BPF_ALU_MOV_X, R1, R3, 0, 0),
            insn(BPF_ALU_AND_K, R1, 0, 0, ACC_READ | ACC_WRITE),
            insn(BPF_JMP32_JNE_X, R1, R3, 4, 0),
            insn(BPF_JMP32_JNE_K, R4, 0, 3, 1),
            insn(BPF_JMP32_JNE_K, R5, 0, 2, 3),
            insn(BPF_ALU_MOV_K, R0, 0, 0, 1),
            insn(BPF_JMP_EXIT, 0, 0, 0, 0),
            // deny all: matches everything, so it ends the program (no unreachable epilogue)
            insn(BPF_ALU_MOV_K, R0, 0, 0, 0),
            insn(BPF_JMP_EXIT, 0, 0, 0, 0),
        ];
        // A failed comparison lands on the first instruction of the next block (14).
        assert_eq!(6 + 1 + p[6].off as usize, 14);
        assert_eq!(p, expect);
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        assert_eq!(insn(0, 3, 1, 0, 0).regs, 0x13);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
    }

    /// Interprets the program the way the kernel would, to check verdicts without root.
    fn run(prog: &[BpfInsn], typ: i32, access: i32, major: u32, minor: u32) -> u32 {
        let ctx = [((access << 16) | typ) as u32, major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (d, s) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                BPF_LDX_MEM_W => reg[d] = ctx[(i.off / 4) as usize] as u64,
                BPF_ALU_AND_K => reg[d] = (reg[d] as u32 & i.imm as u32) as u64,
                BPF_ALU_RSH_K => reg[d] = ((reg[d] as u32) >> i.imm) as u64,
                BPF_ALU_MOV_K => reg[d] = i.imm as u32 as u64,
                BPF_ALU_MOV_X => reg[d] = reg[s] as u32 as u64,
                BPF_JMP32_JNE_K if reg[d] as u32 != i.imm as u32 => pc += i.off as usize,
                BPF_JMP32_JNE_X if reg[d] as u32 != reg[s] as u32 => pc += i.off as usize,
                BPF_JMP32_JEQ_K if reg[d] as u32 == i.imm as u32 => pc += i.off as usize,
                BPF_JMP32_JNE_K | BPF_JMP32_JNE_X | BPF_JMP32_JEQ_K => {}
                BPF_JMP_EXIT => return reg[0] as u32,
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn rules_before_a_catch_all_are_not_emitted() {
        let r = rules(&spec(
            r#"[{"allow": false, "type": "c", "major": 1, "minor": 3},
                {"allow": true, "access": "rwm"}]"#,
        ))
        .unwrap();
        let p = build_program(&r);
        assert_eq!(p.len(), 6 + 2, "{p:?}");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_READ, 1, 3),
            1,
            "the later allow-all wins"
        );
        // No rules at all: allow everything.
        let p = build_program(&[]);
        assert_eq!(p.len(), 6 + 2);
        assert_eq!(run(&p, DEV_BLOCK, ACC_WRITE, 8, 0), 1);
    }

    #[test]
    fn program_verdicts() {
        let p = build_program(&rules(&spec(DEFAULT_DENY)).unwrap());
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "/dev/null read");
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 1, 3), 1, "/dev/null mknod");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 0, "/dev/zero denied");
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 136, 7), 1, "pty write");
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 136, 7), 0, "pty mknod");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "sda");
        let p = build_program(
            &rules(&spec(
                r#"[{"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]"#,
            ))
            .unwrap(),
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 1, 3), 1);
    }

    #[test]
    fn a_partial_deny_refuses_combined_access() {
        // Allow everything, then deny writes to /dev/null: an O_RDWR open asks for
        // read|write in one check and must be refused, as v1 refuses it.
        let p = build_program(
            &rules(&spec(
                r#"[{"allow": true, "access": "rwm"},
                    {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}]"#,
            ))
            .unwrap(),
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0, "O_RDWR");
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 3), 0, "O_WRONLY");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "O_RDONLY");
        // An allow of r only does not cover read|write.
        let p = build_program(
            &rules(&spec(
                r#"[{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "r"}]"#,
            ))
            .unwrap(),
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
    }
}
