//! Prompt paths from scripts are confined to the bot's prompt folder (docs/scripting.md "Prompts"):
//! no absolute paths, no `..`, and no symlinks that lead out of it.

use std::path::{Component, Path, PathBuf};

/// The form of a prompt folder that [`resolve`] compares against (symlinks resolved), made once
/// per bot; a folder that does not exist yet stays as given.
pub fn root(folder: &Path) -> PathBuf {
    folder.canonicalize().unwrap_or_else(|_| folder.to_owned())
}

/// Resolves `name` inside `folder` (a [`root`]). A file that does not exist is not an error
/// here (playing it reports the error through `on_play_done`); leaving the folder is.
pub fn resolve(folder: &Path, name: &str) -> Result<PathBuf, String> {
    let relative = Path::new(name);
    if name.is_empty() {
        return Err("empty prompt name".into());
    }
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "prompt {name:?} must be a path inside the prompt folder (no `..`, not absolute)"
        ));
    }
    let path = folder.join(relative);
    if let Ok(real) = path.canonicalize()
        && !real.starts_with(folder)
    {
        return Err(format!("prompt {name:?} leads out of the prompt folder"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_and_subfolders_resolve() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve(&root(dir.path()), "hello.wav").unwrap(),
            root(dir.path()).join("hello.wav")
        );
        assert!(resolve(&root(dir.path()), "en/menu.wav").is_ok());
        assert!(
            resolve(&root(dir.path()), "missing.wav").is_ok(),
            "reported when played"
        );
    }

    #[test]
    fn escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../secret.wav", "/etc/passwd", "a/../../b.wav", ""] {
            assert!(resolve(&root(dir.path()), name).is_err(), "{name}");
        }
    }

    #[test]
    fn symlinks_out_of_the_folder_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.wav");
        std::fs::write(&secret, b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("link.wav")).unwrap();
        assert!(resolve(&root(dir.path()), "link.wav").is_err());
    }
}
