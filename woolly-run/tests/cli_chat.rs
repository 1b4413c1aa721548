//! `woolly-run chat` driven as a person uses it: in a pseudo-terminal, two turns.

use rexpect::session::spawn_command;

#[test]
fn two_turn_chat_in_a_terminal() {
    let bin = assert_cmd::cargo::cargo_bin("woolly-run");
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "chat",
        "--temp",
        "0",
        "-n",
        "40",
        "--system",
        "You are a helpful assistant.",
    ]);
    let mut p = spawn_command(cmd, Some(120_000)).expect("spawn woolly-run chat in a pty");
    p.exp_string("Ctrl-D or /exit leaves").unwrap();
    p.exp_string("> ").unwrap();
    p.send_line("What is the capital of France?").unwrap();
    // The answer streams, then the next prompt appears.
    let (answer, _) = p.exp_regex(r"\n> ").unwrap();
    assert!(answer.contains("Paris"), "first answer: {answer:?}");
    p.send_line("And of Italy?").unwrap();
    let (answer, _) = p.exp_regex(r"\n> ").unwrap();
    assert!(answer.contains("Rome"), "second answer: {answer:?}");
    p.send_line("/exit").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn ctrl_c_stops_the_answer_but_not_the_chat() {
    let tiny = woolly_model::paths::conformance_file("models/tiny-q4km.gguf");
    let bin = assert_cmd::cargo::cargo_bin("woolly-run");
    let mut cmd = std::process::Command::new(bin);
    // Random weights rarely produce an end token: the answer runs until stopped.
    cmd.arg("chat")
        .arg("-m")
        .arg(&tiny)
        .args(["--temp", "0", "-n", "100000", "--ctx", "4096"]);
    let mut p = spawn_command(cmd, Some(60_000)).expect("spawn woolly-run chat in a pty");
    p.exp_string("> ").unwrap();
    p.send_line("Tell me a very long story.").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    p.send_control('c').unwrap();
    p.exp_regex(r"\n> ").unwrap(); // the prompt is back: the chat goes on
    p.send_line("/exit").unwrap();
    p.exp_eof().unwrap();
}
