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
