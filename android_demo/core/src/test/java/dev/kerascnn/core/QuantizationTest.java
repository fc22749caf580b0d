package dev.kerascnn.core;

import static org.junit.Assert.assertEquals;

import dev.kerascnn.core.BundleMetadata.DType;

import org.junit.Test;

/** The rule metadata.json names "half_away_from_zero", with zero point and clamping. */
public class QuantizationTest {

    private static int q(float value, double scale, int zeroPoint, DType dtype) {
        return Preprocessor.quantize(value, scale, zeroPoint, dtype);
    }

    @Test
    public void halvesRoundAwayFromZero() {
        // Not banker's rounding (Math.rint, NumPy's round): 0.5 -> 1, 2.5 -> 3, -0.5 -> -1.
        assertEquals(1, q(0.5f, 1.0, 0, DType.INT8));
        assertEquals(3, q(2.5f, 1.0, 0, DType.INT8));
        assertEquals(-1, q(-0.5f, 1.0, 0, DType.INT8));
        assertEquals(-3, q(-2.5f, 1.0, 0, DType.INT8));
        assertEquals(2, q(2.4999998f, 1.0, 0, DType.INT8));
        assertEquals(0, q(-0.0f, 1.0, 0, DType.INT8));
    }

    @Test
    public void scaleAndZeroPoint() {
        // 0.3 / 0.1 = 2.9999999999999996 in double: rounds to 3, then + zero point.
        assertEquals(3 - 5, q(0.3f, 0.1, -5, DType.INT8));
        assertEquals(128 + 10, q(1.25f, 0.125, 128, DType.UINT8));
        assertEquals(-1, q(0.0f, 2.0 / 255.0, -1, DType.INT8));
    }

    @Test
    public void clampsToTheDtypeRange() {
        assertEquals(127, q(1000f, 1.0, 0, DType.INT8));
        assertEquals(-128, q(-1000f, 1.0, 0, DType.INT8));
        assertEquals(255, q(300f, 1.0, 0, DType.UINT8));
        assertEquals(0, q(-3f, 1.0, 0, DType.UINT8));
        assertEquals(-128, q(-1f, 1.0 / 128, 0, DType.INT8));
    }
}
