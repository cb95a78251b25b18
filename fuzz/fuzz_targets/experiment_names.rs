//! Experiment ids and file names (src/config.rs, src/experiment.rs, src/web/api.rs): the
//! `{id}` and `{file}` segments of `/api/v1/experiments/{id}[/files/{file}]`, and the
//! `experiment.json` / `manifest.json` found in an experiment folder, through a running
//! service's ExperimentService (test-pattern camera, temp data dir). Never a panic; an id
//! the validator accepts is one plain folder name; a file the API would serve lies in
//! that experiment's folder.
#![no_main]

use std::path::{Component, Path};
use std::sync::{Arc, OnceLock};

use benchcam::app::{App, Hardware};
use benchcam::config::{is_experiment_id, CameraSource, Config};
use benchcam::experiment::ExperimentService;
use benchcam::web::api::suspicious;
use libfuzzer_sys::fuzz_target;

struct Service {
    _app: App,
    experiments: Arc<ExperimentService>,
    dir: tempfile::TempDir,
}

fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.service.data_dir = dir.path().to_path_buf();
        config.camera.source = CameraSource::Pattern;
        config.camera.width = 64;
        config.camera.height = 48;
        config.camera.fps = 2;
        config.auto_recording.enabled = false;
        config.gpio.backend = benchcam::gpio::config::BackendChoice::None;
        let hardware = Hardware::real(&config);
        let app = App::start(config, hardware).expect("the service starts");
        Service {
            experiments: Arc::clone(&app.experiments),
            _app: app,
            dir,
        }
    })
}

fn plain_name(name: &str) -> bool {
    Path::new(name).components().collect::<Vec<_>>() == [Component::Normal(name.as_ref())]
}

fuzz_target!(|data: &[u8]| {
    let service = service();
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (id, file, json) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );

    if is_experiment_id(id) {
        assert!(plain_name(id), "accepted id {id:?} is not one plain name");
    } else {
        assert!(service.experiments.manifest(id).is_err());
        return;
    }
    let folder = service.dir.path().join("experiments").join(id);
    std::fs::create_dir_all(&folder).unwrap();
    // '{' first: an experiment.json; '[' or anything else: a manifest.json (its "files"
    // list is what file downloads are checked against).
    let name = if json.starts_with('{') {
        "experiment.json"
    } else {
        "manifest.json"
    };
    let json = json.strip_prefix('[').unwrap_or(json);
    std::fs::write(folder.join(name), json).unwrap();

    let _ = service.experiments.list();
    let _ = service.experiments.manifest(id);
    if !suspicious(id) && !suspicious(file) {
        if let Ok(path) = service.experiments.file_path(id, file) {
            assert!(plain_name(file), "would serve {file:?}");
            assert_eq!(path.parent(), Some(folder.as_path()), "{path:?}");
        }
    }
    std::fs::remove_dir_all(&folder).unwrap();
});
