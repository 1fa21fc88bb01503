//! `minictl images`, `rmi`, `tag`.

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;
use crate::output::{ago, bytes_decimal, print_json_line, print_str, short_id, Format, Table};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not cut ids
    #[arg(long)]
    pub no_trunc: bool,
}

/// `docker.io/library/busybox:latest` → (`busybox`, `latest`), as Docker shows names.
fn repo_tag(name: &str) -> (String, String) {
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (name, "latest"),
    };
    let repo = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(repo);
    (repo.to_string(), tag.to_string())
}

impl ImagesArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let lists = futures::future::join_all(ctx.clients.iter().map(|cl| {
            let mut c = cl.images.clone();
            async move { c.list(pb::ListImagesRequest {}).await }
        }))
        .await;
        let several = ctx.clients.len() > 1;
        let mut code = 0;
        let mut list = Vec::new();
        for (cl, r) in ctx.clients.iter().zip(lists) {
            match r {
                Ok(r) => list.extend(r.into_inner().images.into_iter().map(|i| (cl, i))),
                Err(s) if several => code = super::node_failure(cl, s, true),
                Err(s) => return cl.fail(s),
            }
        }
        if self.quiet {
            print_str(
                &list
                    .iter()
                    .map(|(_, i)| short_id(&i.id, self.no_trunc) + "\n")
                    .collect::<String>(),
            );
            return code;
        }
        if ctx.format == Format::Json {
            for (cl, i) in &list {
                let (r, t) = repo_tag(&i.name);
                print_json_line(&serde_json::json!({
                    "Repository": r, "Tag": t, "ID": i.id, "Name": i.name,
                    "CreatedAt": i.created, "Size": i.size, "Node": cl.name,
                }));
            }
            return code;
        }
        let mut header = vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"];
        if several {
            header.push("NODE");
        }
        let mut t = Table::new(&header);
        for (cl, i) in &list {
            let (r, tag) = repo_tag(&i.name);
            let mut row = vec![
                r,
                tag,
                short_id(&i.id, self.no_trunc),
                if i.created.is_empty() {
                    "N/A".into()
                } else {
                    ago(&i.created)
                },
                bytes_decimal(i.size),
            ];
            if several {
                row.push(cl.name.clone());
            }
            t.row(row);
        }
        t.print();
        code
    }
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove even if containers use it
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

impl RmiArgs {
    /// Across several nodes, a node without the image is not an error unless none has it
    /// (images are imported per node).
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut code = 0;
        let several = ctx.clients.len() > 1;
        for i in &self.images {
            let mut missing = None;
            let mut found = false;
            for cl in &ctx.clients {
                let mut c = cl.images.clone();
                let prefix = if several {
                    format!("{}: ", cl.name)
                } else {
                    String::new()
                };
                match c
                    .remove(pb::RemoveImageRequest {
                        image: i.clone(),
                        force: self.force,
                    })
                    .await
                {
                    Ok(r) => {
                        found = true;
                        let r = r.into_inner();
                        let mut out = String::new();
                        for u in r.untagged {
                            out.push_str(&format!("{prefix}Untagged: {u}\n"));
                        }
                        for d in r.deleted {
                            out.push_str(&format!("{prefix}Deleted: {d}\n"));
                        }
                        print_str(&out);
                    }
                    Err(s) if several && s.code() == tonic::Code::NotFound => {
                        missing.get_or_insert(s);
                    }
                    Err(s) => code = super::node_failure(cl, s, several),
                }
            }
            if let (false, Some(s)) = (found, missing) {
                eprintln!("minictl: no node has image {i:?}: {}", s.message());
                code = super::exit_for(&s);
            }
        }
        code
    }
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

impl TagArgs {
    /// Across several nodes, tags wherever the source exists; an error only when none has it.
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let several = ctx.clients.len() > 1;
        let mut code = 0;
        let mut missing = None;
        let mut found = false;
        for cl in &ctx.clients {
            let mut c = cl.images.clone();
            match c
                .tag(pb::TagImageRequest {
                    source: self.source.clone(),
                    target: self.target.clone(),
                })
                .await
            {
                Ok(_) => found = true,
                Err(s) if several && s.code() == tonic::Code::NotFound => {
                    missing.get_or_insert(s);
                }
                Err(s) => code = super::node_failure(cl, s, several),
            }
        }
        if let (false, Some(s)) = (found, missing) {
            eprintln!(
                "minictl: no node has image {:?}: {}",
                self.source,
                s.message()
            );
            code = super::exit_for(&s);
        }
        code
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_show_like_docker() {
        assert_eq!(
            super::repo_tag("docker.io/library/busybox:latest"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            super::repo_tag("localhost:5000/app:v1"),
            ("localhost:5000/app".into(), "v1".into())
        );
    }
}
