//! seccomp filters from `linux.seccomp` (runtime-spec config-linux.md "Seccomp").
//!
//! The filter is compiled with libseccomp — what runc and crun use — because it owns the
//! syscall name tables of every architecture, the multi-arch dispatch and the argument
//! comparisons; writing those by hand would be a second, less-tested libseccomp.
//!
//! [`compile`] runs in the parent before `clone3`, so a bad profile fails `create` with a clear
//! error; the compiled context is inherited by the init (a copy of the parent) and [`load`]ed
//! there. Where it is loaded follows runc: with `noNewPrivileges` as late as possible (right
//! before `execve`, so the init's own setup syscalls are not filtered); without it, while the
//! init still has CAP_SYS_ADMIN (seccomp(2) requires one or the other).
//!
//! Syscall names libseccomp does not know (newer than this libseccomp, or of another
//! architecture) are skipped, as runc and crun do: profiles such as Docker's list them
//! deliberately.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall};

use crate::engine::error::{EngineError, Result};

fn name_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn bad(what: String) -> EngineError {
    EngineError::InvalidSpec(format!("linux.seccomp: {what}"))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    let errno = errno.map(|e| e as i32);
    Ok(match name_of(&a).as_str() {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno.unwrap_or(libc::EPERM)),
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno.unwrap_or(libc::EPERM) as u16),
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_NOTIFY" => {
            return Err(EngineError::Unsupported(
                "linux.seccomp action SCMP_ACT_NOTIFY (seccomp user notification)".into(),
            ))
        }
        other => return Err(bad(format!("unknown action {other:?}"))),
    })
}

fn compare(arg: &LinuxSeccompArg) -> Result<ScmpArgCompare> {
    let op = match name_of(&arg.op()).as_str() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        "SCMP_CMP_MASKED_EQ" => {
            // runtime-spec: value is the mask, valueTwo the value compared after masking.
            return Ok(ScmpArgCompare::new(
                arg.index() as u32,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            ));
        }
        other => return Err(bad(format!("unknown operator {other:?}"))),
    };
    if arg.index() > 5 {
        return Err(bad(format!(
            "argument index {} is past the sixth argument",
            arg.index()
        )));
    }
    Ok(ScmpArgCompare::new(arg.index() as u32, op, arg.value()))
}

/// Compiles the profile into a filter context (not yet loaded).
pub fn compile(cfg: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let err = |what: &str| {
        let what = what.to_string();
        move |e: libseccomp::error::SeccompError| bad(format!("{what}: {e}"))
    };
    let default = action(cfg.default_action(), cfg.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(err("creating the filter"))?;
    for a in cfg.architectures().as_deref().unwrap_or_default() {
        let name = name_of(a);
        let arch: ScmpArch = name
            .parse()
            .map_err(|_| bad(format!("unknown architecture {name:?}")))?;
        ctx.add_arch(arch)
            .map_err(err(&format!("adding architecture {name}")))?;
    }
    for f in cfg.flags().as_deref().unwrap_or_default() {
        match name_of(f).as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => {
                ctx.set_ctl_tsync(true).map_err(err("TSYNC"))?;
            }
            "SECCOMP_FILTER_FLAG_LOG" => {
                ctx.set_ctl_log(true).map_err(err("LOG"))?;
            }
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => {
                ctx.set_ctl_ssb(true).map_err(err("SPEC_ALLOW"))?;
            }
            other => {
                return Err(EngineError::Unsupported(format!(
                    "linux.seccomp flag {other:?}"
                )))
            }
        }
    }
    // The init sets no_new_privs itself when the spec asks; libseccomp must not force it.
    ctx.set_ctl_nnp(false).map_err(err("NNP"))?;
    if cfg.listener_path().is_some() {
        return Err(EngineError::Unsupported(
            "linux.seccomp.listenerPath".into(),
        ));
    }
    for rule in cfg.syscalls().as_deref().unwrap_or_default() {
        add_rule(&mut ctx, rule, default)?;
    }
    Ok(ctx)
}

fn add_rule(ctx: &mut ScmpFilterContext, rule: &LinuxSyscall, default: ScmpAction) -> Result<()> {
    let act = action(rule.action(), rule.errno_ret())?;
    if act == default {
        // libseccomp refuses a rule equal to the default action; it would change nothing.
        return Ok(());
    }
    let args = rule.args().clone().unwrap_or_default();
    let conds = args.iter().map(compare).collect::<Result<Vec<_>>>()?;
    // libseccomp cannot put two conditions on the same argument into one rule; like runc,
    // such rules become one rule per condition (any of them matching triggers the action).
    let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indexes.sort_unstable();
    let same_arg_twice = indexes.windows(2).any(|w| w[0] == w[1]);
    for name in rule.names() {
        let Ok(sc) = ScmpSyscall::from_name(name) else {
            continue; // unknown to this libseccomp / architecture: skipped, as runc does
        };
        let res = if conds.is_empty() {
            ctx.add_rule(act, sc)
        } else if same_arg_twice {
            conds
                .iter()
                .try_for_each(|c| ctx.add_rule_conditional(act, sc, &[*c]).map(|_| ()))
                .map(|_| &mut *ctx)
        } else {
            ctx.add_rule_conditional(act, sc, &conds)
        };
        res.map_err(|e| bad(format!("rule for {name}: {e}")))?;
    }
    Ok(())
}

/// Installs the filter on the calling process (the init).
pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load()
        .map_err(|e| EngineError::Init(format!("failed to load the seccomp filter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).expect("seccomp json")
    }

    #[test]
    fn docker_style_profile_compiles_and_unknown_names_are_skipped() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "no_such_syscall_in_any_kernel"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 131072, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }));
        let ctx = compile(&p).expect("compiles");
        let out = tempfile::tempfile().expect("tempfile");
        ctx.export_bpf(&out).expect("export");
        // One 8-byte BPF instruction per line of the program: a real program, not an empty one.
        assert!(out.metadata().expect("stat").len() > 8 * 10);
    }

    #[test]
    fn notify_and_bad_indexes_are_refused() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        let e = compile(&p).expect_err("refused").to_string();
        assert!(e.contains("SCMP_ACT_NOTIFY"), "{e}");
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        }));
        let e = compile(&p).expect_err("refused").to_string();
        assert!(e.contains("index 7"), "{e}");
    }
}
