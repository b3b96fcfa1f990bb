use super::*;

#[test]
#[ignore]
fn dump() {
    let t = std::time::Instant::now();
    let built = OpenApiV3::build(&Registry::built_in());
    eprintln!("build: {:?}", t.elapsed());
    let dir = std::path::Path::new("/tmp/openapi-dump");
    std::fs::create_dir_all(dir).unwrap();
    for d in built.documents() {
        eprintln!("{} {} bytes", d.path(), d.bytes().len());
        std::fs::write(dir.join(format!("{}.json", d.path().replace('/', "__"))), d.bytes()).unwrap();
    }
    std::fs::write(dir.join("index.json"), built.index().bytes()).unwrap();
}
