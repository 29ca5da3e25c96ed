"""The FPGA accelerator, in Amaranth HDL, bit-exact with the integer reference (`model.intref`).

* `accelerator.Accelerator(program, lanes, logic_lanes=0)`: the top level (ports: input/output streams,
  start/busy/done).
* `plan`: memory layouts and banks, ROM contents and the step table derived from an `IntProgram` at build time.
* Blocks, each with its golden model in `model.intops`: `requant` (Requantizer, ScaleShiftClamp),
  `mac_array` (MacArray; `packed`: two products per multiplier block, the pair steps' PairProduct),
  `divsqrt` (Reciprocal, Isqrt), `softmax` (SoftmaxUnit), `layernorm`
  (LayerNormUnit); `rowio` (the row units' element interface, row reader and writer) and `arith` hold
  their shared interfaces and expressions.
* `simulate`: run windows through the Amaranth simulator (a `Simulation`: words, cycles and the buffers it
  read back), `first_mismatch` to name, from that result, where it parts from the reference; `resources`:
  what a build needs, `lanes_in_logic` and `check_fit` for a device, and `design_plan`, the plan the
  accelerator is built from (`plan.make_plan`'s, attention's pair steps dropped where they cost the UP5K fit).
"""
