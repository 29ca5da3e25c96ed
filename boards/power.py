"""A simple power model per device, to turn a build's resource counts and clock into an energy estimate.

    P = P_static + f_MHz x (C_clock + sum over resources of count x C_resource)        [uW]
    energy per inference = P x latency

The coefficients are ESTIMATES, not measurements: an order-of-magnitude figure for comparing lane counts
and boards, not a substitute for the vendor power calculators or a current meter. They assume the
calculators' default activity (about 12.5 % toggle rate on logic, block RAM enabled every cycle, the
multipliers busy every cycle: the MAC array is), typical silicon at 25 C, core supply only (no I/O
banks, no board regulators, LEDs or USB bridge, which on a development board draw more than the FPGA).

Where the figures come from (rounded; read them as "about"):

* iCE40 UltraPlus (UP5K), 40 nm, VCC 1.2 V. Static: the family datasheet (Lattice FPGA-DS-02008,
  "Static supply current", typical core ICC in the tens of uA; Lattice advertises 75 uA standby), so
  about 0.1 mW. Dynamic: per-resource values in the range of what the Lattice Radiant power calculator
  reports for the UltraPlus at 12.5 % toggle: a logic cell (LUT4 + its flip-flop + routing) about
  0.1 uW/MHz, an SB_MAC16 about 5 uW/MHz when multiplying every cycle, a 4-kbit EBR about 2 uW/MHz,
  a 256-kbit SPRAM about 5 uW/MHz, the global clock network about 20 uW/MHz. Published bench
  measurements of small UltraPlus designs (e.g. tinyvision.ai's "iCE40 FPGA power series") land in the
  same range: a few mW at tens of MHz.
* ECP5 (LFE5U-25F / -85F), 40 nm, VCC 1.1 V. Static: the ECP5 family datasheet (FPGA-DS-02012, "Supply
  current (standby)", typical core ICC of a few tens of mA for the 25F, more for the 85F) and Lattice
  TN1266 "Power consumption and management for ECP5 devices": about 35 mW (25F) and 100 mW (85F).
  Dynamic, from the Diamond power calculator's typical per-resource figures: a LUT4 with routing about
  0.2 uW/MHz, a flip-flop about 0.05 uW/MHz, a MULT18X18D about 10 uW/MHz, a DP16KD (18 kbit) about
  10 uW/MHz, the primary clock tree about 80 uW/MHz, an EHXPLLL about 5 mW flat.
* Spartan-7 (XC7S15 / 25 / 50), 28 nm, VCCINT 1.0 V. Static: the Xilinx Power Estimator (XPE) device
  static power at 25 C: about 20 mW (S15), 30 mW (S25), 45 mW (S50). Dynamic, XPE's typical figures: a
  LUT6 with routing about 0.15 uW/MHz, a flip-flop about 0.03 uW/MHz, a DSP48E1 about 8 uW/MHz, a
  36-kbit block RAM about 20 uW/MHz, the clock tree about 50 uW/MHz.
* Gowin GW1NR-9 (LittleBee, 55 nm, VCC 1.2 V on the LV part of the Tang Nano 9K). Static: the GW1NR
  datasheet DS117 ("Static current", typical ICCQ of the GW1NR-9 LV of the order of 10 mA; the 64-Mbit
  PSRAM die in the package is not counted, it is idle), so about 12 mW. Dynamic: figures in the range of
  what the Gowin Power Estimator (in the Gowin EDA, UG282) reports at its default 12.5 % toggle: a LUT4
  with routing about 0.25 uW/MHz, a flip-flop about 0.05 uW/MHz, an ALU (carry-chain) cell about
  0.2 uW/MHz, an 18x18 multiplier about 8 uW/MHz (resource DSP counts 18x18 multipliers, two MULT9X9 one),
  an 18-kbit BSRAM about 10 uW/MHz, a RAM16SDP4 shadow RAM about 0.5 uW/MHz, the global clock about
  50 uW/MHz, an rPLL about 5 mW flat.
* Gowin GW2A-18 (Arora, 55 nm, VCC 1.0 V, Tang Primer 20K). Static: the GW2A datasheet DS102 ("Static
  current", typical ICCQ of the order of 40 to 60 mA for the GW2A-18), so about 50 mW. Dynamic: the Power
  Estimator's figures as for the GW1NR-9, scaled by (1.0 / 1.2)^2 for the lower core voltage, and a larger
  clock tree (about 80 uW/MHz). Both Gowin static figures are the least certain in this module: read them
  as "tens of mW, not hundreds, and not tens of uW as on the UP5K".
"""
from __future__ import annotations

from dataclasses import dataclass

from intformer.model.errors import IntformerError


@dataclass(frozen=True)
class PowerModel:
    device: str
    static_mw: float
    clock_uw_per_mhz: float              # the clock network, whatever the design
    uw_per_mhz: dict                     # resource -> uW per MHz per used unit
    flat_mw: dict                        # resource -> mW per used unit, independent of frequency (PLLs)
    source: str


MODELS = {
    "ice40-up5k": PowerModel("ice40-up5k", 0.1, 20.0,
                             {"LC": 0.10, "DSP": 5.0, "BRAM": 2.0, "SPRAM": 5.0}, {"PLL": 0.5},
                             "iCE40 UltraPlus datasheet FPGA-DS-02008 (static); Radiant power calculator typical "
                             "per-resource figures (dynamic)"),
    "ecp5-25f": PowerModel("ecp5-25f", 35.0, 80.0,
                           {"LUT": 0.20, "FF": 0.05, "DSP": 10.0, "BRAM": 10.0}, {"PLL": 5.0},
                           "ECP5 datasheet FPGA-DS-02012 and TN1266 (static); Diamond power calculator typical "
                           "per-resource figures (dynamic)"),
    "ecp5-85f": PowerModel("ecp5-85f", 100.0, 120.0,
                           {"LUT": 0.20, "FF": 0.05, "DSP": 10.0, "BRAM": 10.0}, {"PLL": 5.0},
                           "ECP5 datasheet FPGA-DS-02012 and TN1266 (static); Diamond power calculator typical "
                           "per-resource figures (dynamic)"),
}
_GOWIN_SOURCE = ("{} datasheet {} (static); Gowin Power Estimator (UG282) typical per-resource figures "
                 "(dynamic): estimates")
_GOWIN_UW = {"LUT": 0.25, "FF": 0.05, "ALU": 0.20, "DSP": 8.0, "BRAM": 10.0, "SSRAM": 0.5}
MODELS["gw1nr-9"] = PowerModel("gw1nr-9", 12.0, 50.0, dict(_GOWIN_UW), {"PLL": 5.0},
                               _GOWIN_SOURCE.format("GW1NR", "DS117"))
MODELS["gw2a-18"] = PowerModel("gw2a-18", 50.0, 80.0, {k: round(v * (1.0 / 1.2) ** 2, 3) for k, v in _GOWIN_UW.items()},
                               {"PLL": 5.0}, _GOWIN_SOURCE.format("GW2A", "DS102"))
for _name, _static in (("xc7s15", 20.0), ("xc7s25", 30.0), ("xc7s50", 45.0)):
    MODELS[_name] = PowerModel(_name, _static, 50.0, {"LUT": 0.15, "FF": 0.03, "DSP": 8.0, "BRAM": 20.0},
                               {"PLL": 10.0}, "Xilinx Power Estimator (XPE) typical figures, 25 C")


def model(device: str) -> PowerModel:
    if device not in MODELS:
        raise IntformerError(f"no power model for device {device!r}; known: {', '.join(MODELS)}")
    return MODELS[device]


def estimate_power_mw(device: str, used: dict, clock_mhz: float) -> dict:
    """Static, dynamic and total core power (mW) of a design using `used` resources at `clock_mhz`."""
    pm = model(device)
    dyn_uw = clock_mhz * (pm.clock_uw_per_mhz + sum(used.get(k, 0) * c for k, c in pm.uw_per_mhz.items()))
    flat_mw = sum(used.get(k, 0) * c for k, c in pm.flat_mw.items())
    dynamic = dyn_uw / 1000.0 + flat_mw
    return {"static_mw": pm.static_mw, "dynamic_mw": dynamic, "total_mw": pm.static_mw + dynamic,
            "model": pm.source}


def energy_uj(device: str, used: dict, clock_mhz: float, cycles: int) -> dict:
    """The power estimate and the energy of one inference of `cycles` clock cycles (uJ): mW x us / 1000."""
    power = estimate_power_mw(device, used, clock_mhz)
    latency_us = cycles / clock_mhz
    return {**power, "energy_uj": power["total_mw"] * latency_us / 1000.0}
