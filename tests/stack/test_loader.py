"""Loading stack files: every mistake names the file, the line and the key, and says what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from servestack.errors import StackError
from servestack.stack import load_default_stack, load_stack, resolve_model

VALID = """\
version: 1
gateway:
  port: 9000
services:
  chat:
    engine: llamacpp
    model: ./models/tiny.gguf
    context_length: 4096
"""


def write(tmp_path: Path, text: str, name: str = "stack.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(StackError) as info:
        load_stack(path, environ=environ or {})
    return info.value.message


def test_valid_stack_loads_with_defaults_and_absolute_model_path(tmp_path: Path) -> None:
    stack = load_stack(write(tmp_path, VALID), environ={})
    service = stack.services["chat"]
    assert stack.gateway.port == 9000
    assert stack.gateway.host == "127.0.0.1"
    assert service.context_length == 4096
    assert service.model == str(tmp_path / "models" / "tiny.gguf")
    assert stack.served_names("chat") == ["chat"]


def test_unknown_key_names_file_line_key_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("context_length", "contxt_length"))
    message = error_of(path)
    assert message == f"{path}:8: services.chat.contxt_length: unknown key (did you mean 'context_length'?)"


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("4096", "lots"))
    message = error_of(path)
    assert message.startswith(f"{path}:8: services.chat.context_length: Input should be a valid integer")
    assert "(got 'lots')" in message


def test_unknown_engine_lists_the_choices(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, VALID.replace("engine: llamacpp", "engine: tgi")))
    assert ":6: services.chat.engine:" in message
    assert "'llamacpp'" in message and "'vllm'" in message and "(got 'tgi')" in message


def test_bad_yaml_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  port: 9000", "  port: [9000"))
    message = error_of(path)
    assert message.startswith(f"{path}:4: invalid YAML") or message.startswith(f"{path}:5: invalid YAML")


def test_missing_file_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(StackError) as info:
        load_stack(tmp_path / "nope.yaml")
    assert info.value.message == f"{tmp_path / 'nope.yaml'}: stack file not found"
    assert info.value.fix is not None and "servestack init" in info.value.fix


def test_missing_variable_names_it_and_where_it_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "    env:\n      HF_TOKEN: ${HF_TOKEN}\n")
    message = error_of(path)
    assert message == f"{path}:10: services.chat.env.HF_TOKEN: variable ${{HF_TOKEN}} is not set"


def test_variables_come_from_dotenv_and_the_environment_wins(tmp_path: Path) -> None:
    write(tmp_path, "PORT=9100\nTOKEN=from-dotenv\n", name=".env")
    path = write(
        tmp_path,
        VALID.replace("port: 9000", "port: ${PORT}") + "    env:\n      TOKEN: ${TOKEN}\n      MODE: ${MODE:-fast}\n",
    )
    stack = load_stack(path, environ={"TOKEN": "from-env"})
    assert stack.gateway.port == 9100
    assert stack.services["chat"].env == {"TOKEN": "from-env", "MODE": "fast"}


def test_escaped_dollar_is_kept_literally(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "    args: ['--template', '$${not_a_var}']\n")
    assert load_stack(path, environ={}).services["chat"].args == ["--template", "${not_a_var}"]


def test_numbers_in_args_become_strings(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "    args: [--n_threads, 2]\n")
    assert load_stack(path, environ={}).services["chat"].args == ["--n_threads", "2"]


def test_port_clash_between_services_is_an_error(tmp_path: Path) -> None:
    text = VALID + "    port: 9001\n  other:\n    engine: llamacpp\n    model: x.gguf\n    port: 9001\n"
    message = error_of(write(tmp_path, text))
    assert "port 9001 of service 'other' is already used by service 'chat'" in message


def test_empty_file_and_wrong_top_level(tmp_path: Path) -> None:
    assert "empty" in error_of(write(tmp_path, ""))
    assert "expected a mapping" in error_of(write(tmp_path, "- a\n- b\n"))
    assert "services: required key is missing" in error_of(write(tmp_path, "version: 1\n"))


def test_default_stack_serves_smollm2_from_the_package() -> None:
    stack = load_default_stack()
    service = stack.services["smollm2"]
    assert stack.gateway.port == 8000
    assert service.engine == "llamacpp"
    path = Path(resolve_model(service.model))
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()


def test_missing_model_package_says_how_to_install() -> None:
    with pytest.raises(StackError) as info:
        resolve_model("package:no_such_package_xyz/model.gguf")
    assert "is not installed" in info.value.message


def test_a_duplicate_key_names_both_lines_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "    context_length: 8192\n")
    with pytest.raises(StackError) as info:
        load_stack(path, environ={})
    assert info.value.message.startswith(f"{path}:9: services.chat.context_length: duplicate key (first on line 8)")
    assert info.value.fix == "remove one of the two"


def test_a_duplicate_service_is_refused_rather_than_silently_replaced(tmp_path: Path) -> None:
    text = VALID + "  chat:\n    engine: sim\n    model: other\n"
    assert error_of(write(tmp_path, text)).startswith(f"{tmp_path / 'stack.yaml'}:9: services.chat: duplicate key")


def test_a_key_may_override_one_merged_from_an_anchor(tmp_path: Path) -> None:
    text = "services:\n  chat: &chat\n    engine: llamacpp\n    model: ./m.gguf\n  copy:\n    <<: *chat\n"
    stack = load_stack(write(tmp_path, text + "    context_length: 2048\n"), environ={})
    assert stack.services["copy"].context_length == 2048 and stack.services["copy"].engine == "llamacpp"


def test_the_stack_knows_where_each_key_is_written(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    stack = load_stack(path, environ={})
    assert stack.locate(("services", "chat", "model")) == f"{path}:7: services.chat.model"
    assert stack.written(("services", "chat", "model")) == "./models/tiny.gguf"  # as written, not resolved
    assert stack.locate(("services", "chat", "gpus")) == f"{path}:5: services.chat.gpus"  # unset: its service
    assert stack == load_stack(write(tmp_path, VALID, name="copy.yaml"), environ={})  # same settings, same stack
