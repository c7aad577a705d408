//! Out of file descriptors: a server whose process can open only a few more is flooded with idle
//! connections; it backs off while accepting fails, closes the idle ones after the keep-alive timeout, and
//! answers a new /health request. The server runs in a child process (this test binary again), so that the
//! lowered limit does not apply to the clients.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{request, tiny_model, TestServer};
use llm2vec::Options;
use llm2vec_server::Config;

const TEST: &str = "idle_connections_out_of_file_descriptors_do_not_lock_out_new_clients";
const CHILD: &str = "LLM2VEC_TEST_FD_LIMIT_CHILD";

#[test]
fn idle_connections_out_of_file_descriptors_do_not_lock_out_new_clients() {
    if std::env::var_os(CHILD).is_some() {
        return serve_with_few_descriptors();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("child server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = lines
        .find_map(|line| line.ok()?.split_once("listening on ")?.1.trim().parse().ok())
        .expect("the child names its address");
    // Far more idle clients than the child can hold descriptors for; the rest wait in the listen queue.
    let idle: Vec<TcpStream> = (0..12).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let (done, reply) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(request(addr, "GET", "/health", b"")));
    let reply = reply.recv_timeout(Duration::from_secs(8));
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
    let reply = reply.expect("/health on a new connection was not answered within 8 s");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// The child: a server with short idle timeouts, then a descriptor limit a few above those open.
fn serve_with_few_descriptors() {
    let config = Config { keep_alive_timeout: 0.3, header_timeout: 0.3, ..Config::default() };
    let server = TestServer::start(&tiny_model(), Options::default(), config);
    server.assert_healthy();
    let open = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count() as libc::rlim_t;
    // SAFETY: getrlimit and setrlimit only read or write the struct passed, for this process.
    let lowered = unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = open + 3;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    assert!(lowered, "cannot lower the descriptor limit");
    println!("listening on {}", server.addr);
    std::thread::sleep(Duration::from_secs(20));
}
