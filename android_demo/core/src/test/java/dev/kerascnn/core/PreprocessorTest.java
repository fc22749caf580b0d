package dev.kerascnn.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import org.junit.Test;

/** Channel handling, crop and buffers on hand-made images (the golden tests cover the numbers). */
public class PreprocessorTest {

    private static JsonArray array(double... values) {
        JsonArray a = new JsonArray();
        for (double v : values) {
            a.add(new JsonPrimitive(v));
        }
        return a;
    }

    /** The fixture metadata turned into a 1-channel (L) model. */
    private static BundleMetadata gray() {
        JsonObject json = MetadataFixtures.json(3, "softmax");
        JsonObject input = json.getAsJsonObject("input");
        input.add("shape", array(1, 4, 6, 1));
        input.addProperty("channels", 1);
        JsonObject norm = input.getAsJsonObject("normalization");
        norm.add("scale", array(1.0));
        norm.add("offset", array(0.0));
        norm.addProperty("channel_order", "L");
        for (String format : new String[] {"tflite_float32", "tflite_int8"}) {
            json.getAsJsonObject("models").getAsJsonObject(format).getAsJsonObject("input").add("shape", array(1, 4, 6, 1));
        }
        return BundleMetadata.parse(json.toString());
    }

    private static BundleMetadata rgb(String channelOrder, String crop) {
        JsonObject json = MetadataFixtures.json(3, "softmax");
        json.getAsJsonObject("input").getAsJsonObject("normalization").addProperty("channel_order", channelOrder);
        if (crop != null) {
            json.getAsJsonObject("input").addProperty("crop", crop);
        }
        return BundleMetadata.parse(json.toString());
    }

    private static int[] solid(int argb, int count) {
        int[] pixels = new int[count];
        java.util.Arrays.fill(pixels, argb);
        return pixels;
    }

    @Test
    public void grayModelsGetTheLumaOfRgbPixels() {
        BundleMetadata m = gray();
        Preprocessor pre = new Preprocessor(m, m.model("tflite_float32").input);
        float[] x = pre.normalizeArgb(new int[] {0xFF102030}, 1, 1);
        float luma = 0.299f * 0x10 + 0.587f * 0x20 + 0.114f * 0x30;
        assertEquals(24, x.length);
        for (float v : x) {
            assertEquals(luma, v, 0f);
        }
    }

    @Test
    public void bgrModelsSeeTheChannelsReversedBeforeScaling() {
        Preprocessor pre = new Preprocessor(rgb("BGR", null), rgb("BGR", null).model("tflite_float32").input);
        float[] x = pre.normalizeArgb(solid(0xFF0A141E, 24), 6, 4); // R=10, G=20, B=30
        // scale [0.5, 0.25, 2], offset [-1, 0, 1] apply to B, G, R in that order
        assertArrayEquals(new float[] {30 * 0.5f - 1, 20 * 0.25f, 10 * 2f + 1}, java.util.Arrays.copyOf(x, 3), 0f);
        Preprocessor rgbPre = new Preprocessor(rgb("RGB", null), rgb("RGB", null).model("tflite_float32").input);
        x = rgbPre.normalizeArgb(solid(0xFF0A141E, 24), 6, 4);
        assertArrayEquals(new float[] {10 * 0.5f - 1, 20 * 0.25f, 30 * 2f + 1}, java.util.Arrays.copyOf(x, 3), 0f);
    }

    @Test
    public void alphaIsIgnoredAndBytesEqualInts() {
        BundleMetadata m = rgb("RGB", null);
        Preprocessor pre = new Preprocessor(m, m.model("tflite_float32").input);
        byte[] bytes = new byte[7 * 5 * 3];
        int[] opaque = new int[7 * 5];
        int[] transparent = new int[7 * 5];
        for (int i = 0; i < opaque.length; i++) {
            int r = (i * 37) & 0xFF;
            int g = (i * 91 + 3) & 0xFF;
            int b = (255 - i * 7) & 0xFF;
            bytes[3 * i] = (byte) r;
            bytes[3 * i + 1] = (byte) g;
            bytes[3 * i + 2] = (byte) b;
            opaque[i] = 0xFF000000 | (r << 16) | (g << 8) | b;
            transparent[i] = (r << 16) | (g << 8) | b;
        }
        float[] fromBytes = pre.normalizeRgb(bytes, 7, 5);
        assertArrayEquals(fromBytes, pre.normalizeArgb(opaque, 7, 5), 0f);
        assertArrayEquals(fromBytes, pre.normalizeArgb(transparent, 7, 5), 0f);
    }

    @Test
    public void oneChannelImagesAreRepeatedForRgbModels() {
        BundleMetadata m = rgb("RGB", null);
        Preprocessor pre = new Preprocessor(m, m.model("tflite_float32").input);
        float[] x = pre.normalize(new Resize.FloatImage(new float[] {100f}, 1, 1, 1));
        assertArrayEquals(new float[] {100 * 0.5f - 1, 100 * 0.25f, 100 * 2f + 1}, java.util.Arrays.copyOf(x, 3), 0f);
    }

    @Test
    public void centerCropOnlyWhenTheMetadataAsksForIt() {
        // A 4x12 frame for a 4x6 model: center crop keeps columns 3..8 (value 200), plain resize
        // squeezes the whole width and sees the 0-valued borders too.
        int[] pixels = new int[4 * 12];
        for (int y = 0; y < 4; y++) {
            for (int x = 0; x < 12; x++) {
                int v = x >= 3 && x < 9 ? 200 : 0;
                pixels[y * 12 + x] = 0xFF000000 | (v << 16) | (v << 8) | v;
            }
        }
        BundleMetadata cropped = rgb("RGB", "center");
        float[] x = new Preprocessor(cropped, cropped.model("tflite_float32").input).normalizeArgb(pixels, 12, 4);
        for (int i = 0; i < x.length; i += 3) {
            assertEquals(200 * 0.5f - 1, x[i], 0f);
        }
        BundleMetadata plain = rgb("RGB", null);
        x = new Preprocessor(plain, plain.model("tflite_float32").input).normalizeArgb(pixels, 12, 4);
        assertEquals(-1f, x[0], 0f);
    }

    @Test
    public void writesNativeOrderFloatsAndQuantizedBytes() {
        BundleMetadata m = rgb("RGB", null);
        Preprocessor f32 = new Preprocessor(m, m.model("tflite_float32").input);
        ByteBuffer buffer = f32.allocateInput();
        assertEquals(ByteOrder.nativeOrder(), buffer.order());
        assertEquals(4 * 6 * 3 * 4, buffer.capacity());
        f32.writeArgb(solid(0xFF0A141E, 24), 6, 4, buffer);
        assertEquals(0, buffer.position());
        assertEquals(10 * 0.5f - 1, buffer.getFloat(0), 0f);

        Preprocessor int8 = new Preprocessor(m, m.model("tflite_int8").input); // scale 0.05, zero point -3
        buffer = int8.allocateInput();
        assertEquals(72, buffer.capacity());
        int8.writeArgb(solid(0xFF0A141E, 24), 6, 4, buffer);
        assertEquals((byte) (4.0 / 0.05 - 3), buffer.get(0));   // R: 10 * 0.5 - 1 = 4 -> 80 - 3
        assertEquals((byte) 97, buffer.get(1));                   // G: 5 / 0.05 = 100 -> 97
        assertEquals((byte) 127, buffer.get(2));                  // B: 61 / 0.05 clamps
    }

    @Test
    public void wrongPixelCountsAreRejected() {
        BundleMetadata m = rgb("RGB", null);
        Preprocessor pre = new Preprocessor(m, m.model("tflite_float32").input);
        try {
            pre.normalizeArgb(new int[10], 4, 3);
            fail();
        } catch (IllegalArgumentException expected) {
            assertEquals("Expected 4x3x1 values. Received: 10", expected.getMessage());
        }
        try {
            pre.normalizeRgb(new byte[11], 2, 2);
            fail();
        } catch (IllegalArgumentException expected) {
            assertEquals("Expected 2x2x3 values. Received: 11", expected.getMessage());
        }
    }
}
