package dev.kerascnn.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import dev.kerascnn.core.BundleMetadata.ModelFile;
import dev.kerascnn.core.Postprocessor.Recognition;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.junit.Test;

/**
 * The core against the Python pipeline, on the bundles and images of
 * scripts/make_android_golden.py: the same input tensor (float within 1e-5, quantized within one
 * step) and, given the LiteRT interpreter's output, the same ranking and confidences.
 */
public class GoldenTest {

    /** Float tolerance: the RGB -> L weighted sum may differ from NumPy's BLAS in the last bit. */
    private static final float FLOAT_TOLERANCE = 1e-5f;

    private static final class Case {
        final String bundle;
        final BundleMetadata metadata;
        final JsonObject golden;
        final JsonObject json;
        final Golden.Image image;

        Case(String bundle, BundleMetadata metadata, JsonObject golden, JsonObject json) {
            this.bundle = bundle;
            this.metadata = metadata;
            this.golden = golden;
            this.json = json;
            this.image = Golden.image(json.get("image").getAsString());
        }

        String where() {
            return bundle + "/" + image.name;
        }

        float[] expectedNormalized() {
            return Golden.floats(json.get("normalized_f32").getAsString());
        }
    }

    private static List<Case> cases() {
        List<Case> cases = new ArrayList<>();
        for (String bundle : Golden.bundles()) {
            JsonObject golden = Golden.json(bundle + ".json");
            BundleMetadata metadata = BundleMetadata.parse(golden.get("metadata").toString());
            for (JsonElement c : golden.getAsJsonArray("cases")) {
                cases.add(new Case(bundle, metadata, golden, c.getAsJsonObject()));
            }
        }
        assertTrue("the fixtures have cases", cases.size() >= 5);
        return cases;
    }

    @Test
    public void fixturesCoverEveryPath() {
        boolean gray = false;
        boolean bgr = false;
        boolean nearest = false;
        boolean logits = false;
        boolean uint8 = false;
        boolean int8 = false;
        for (Case c : cases()) {
            BundleMetadata m = c.metadata;
            gray |= m.channels == 1;
            bgr |= m.channelOrder == BundleMetadata.ChannelOrder.BGR;
            nearest |= m.resizeMethod == BundleMetadata.ResizeMethod.NEAREST;
            logits |= m.activation == BundleMetadata.Activation.NONE;
            for (ModelFile f : m.models().values()) {
                uint8 |= f.input.dtype == BundleMetadata.DType.UINT8;
                int8 |= f.input.dtype == BundleMetadata.DType.INT8;
            }
        }
        assertTrue(gray && bgr && nearest && logits && uint8 && int8);
    }

    @Test
    public void normalizedInputMatchesPython() {
        for (Case c : cases()) {
            Preprocessor pre = new Preprocessor(c.metadata, c.metadata.model("tflite_float32").input);
            float[] fromRgb = pre.normalizeRgb(c.image.rgb, c.image.width, c.image.height);
            float[] fromArgb = pre.normalizeArgb(c.image.argb(), c.image.width, c.image.height);
            assertArrayEquals(c.where() + ": RGB bytes and ARGB ints", fromRgb, fromArgb, 0f);
            float[] expected = c.expectedNormalized();
            assertEquals(c.where(), expected.length, fromRgb.length);
            for (int i = 0; i < expected.length; i++) {
                assertEquals(c.where() + " element " + i, expected[i], fromRgb[i], FLOAT_TOLERANCE);
            }
            if (c.metadata.channels == 3) {
                // No weighted sum in the way: resize and normalisation are the same float32 operations.
                assertArrayEquals(c.where() + " (RGB path is exact)", expected, fromRgb, 0f);
            }
        }
    }

    @Test
    public void quantizationRuleMatchesPythonExactly() {
        // Python's own normalised tensor through the Java rule: no tolerance.
        for (Case c : cases()) {
            for (Map.Entry<String, JsonElement> e : c.json.getAsJsonObject("inputs").entrySet()) {
                ModelFile file = c.metadata.model(e.getKey());
                JsonObject input = e.getValue().getAsJsonObject();
                int[] expected = Golden.ints(input.get("data").getAsString(), input.get("dtype").getAsString());
                int[] actual = new Preprocessor(c.metadata, file.input).quantize(c.expectedNormalized());
                assertArrayEquals(c.where() + " " + e.getKey(), expected, actual);
            }
        }
    }

    @Test
    public void quantizedInputMatchesPythonWithinOneStep() {
        int integerCases = 0;
        for (Case c : cases()) {
            for (Map.Entry<String, JsonElement> e : c.json.getAsJsonObject("inputs").entrySet()) {
                ModelFile file = c.metadata.model(e.getKey());
                JsonObject input = e.getValue().getAsJsonObject();
                int[] expected = Golden.ints(input.get("data").getAsString(), input.get("dtype").getAsString());
                Preprocessor pre = new Preprocessor(c.metadata, file.input);
                int[] actual = pre.quantize(pre.normalizeRgb(c.image.rgb, c.image.width, c.image.height));
                assertEquals(expected.length, actual.length);
                for (int i = 0; i < expected.length; i++) {
                    assertTrue(c.where() + " " + e.getKey() + " element " + i + ": " + actual[i] + " vs "
                            + expected[i], Math.abs(actual[i] - expected[i]) <= 1);
                }
                if (c.metadata.channels == 3) {
                    assertArrayEquals(c.where() + " " + e.getKey() + " (RGB path is exact)", expected, actual);
                }
                integerCases++;
            }
        }
        assertTrue(integerCases >= 5);
    }

    @Test
    public void inputBufferHoldsTheTensor() {
        for (Case c : cases()) {
            for (ModelFile file : c.metadata.models().values()) {
                Preprocessor pre = new Preprocessor(c.metadata, file.input);
                ByteBuffer buffer = pre.allocateInput();
                assertEquals(file.input.bytes(), buffer.capacity());
                pre.writeArgb(c.image.argb(), c.image.width, c.image.height, buffer);
                float[] normalized = pre.normalizeRgb(c.image.rgb, c.image.width, c.image.height);
                if (file.input.dtype == BundleMetadata.DType.FLOAT32) {
                    float[] read = new float[normalized.length];
                    buffer.asFloatBuffer().get(read);
                    assertArrayEquals(c.where(), normalized, read, 0f);
                } else {
                    int[] q = pre.quantize(normalized);
                    for (int i = 0; i < q.length; i++) {
                        assertEquals(c.where() + " byte " + i, (byte) q[i], buffer.get(i));
                    }
                }
            }
        }
    }

    @Test
    public void rankingMatchesInterpreterOutput() {
        for (Case c : cases()) {
            List<String> labels = c.metadata.parseLabels(c.golden.get("labels_txt").getAsString());
            assertEquals(c.metadata.classNames(), labels);
            for (Map.Entry<String, JsonElement> e : c.json.getAsJsonObject("outputs").entrySet()) {
                ModelFile file = c.metadata.model(e.getKey());
                JsonObject out = e.getValue().getAsJsonObject();
                String where = c.where() + " " + e.getKey();
                Postprocessor post = new Postprocessor(c.metadata, file.output, labels);

                float[] scores = scoresFromRawBuffer(post, file, out);
                assertArrayEquals(where + " scores", Golden.floatArray(out.getAsJsonArray("scores")), scores, 0f);
                if (file.output.dtype.isInteger()) {
                    assertArrayEquals(where + " scores (int path)", scores,
                            post.scores(Golden.intArray(out.getAsJsonArray("raw"))), 0f);
                }

                int[] top = Golden.intArray(out.getAsJsonArray("top3"));
                List<Recognition> ranked = post.topK(scores, top.length);
                float[] confidences = Golden.floatArray(out.getAsJsonArray("confidences"));
                assertEquals(where, top.length, ranked.size());
                for (int r = 0; r < top.length; r++) {
                    Recognition rec = ranked.get(r);
                    assertEquals(where + " rank " + r, top[r], rec.index);
                    assertEquals(where + " label " + r, labels.get(top[r]), rec.label);
                    assertEquals(where + " confidence " + r, confidences[top[r]], rec.confidence, 1e-6f);
                }
            }
        }
    }

    /** The raw output as LiteRT leaves it in a native-order output buffer, read back by the core. */
    private static float[] scoresFromRawBuffer(Postprocessor post, ModelFile file, JsonObject out) {
        ByteBuffer buffer = post.allocateOutput();
        for (JsonElement v : out.getAsJsonArray("raw")) {
            if (file.output.dtype == BundleMetadata.DType.FLOAT32) {
                buffer.putFloat((float) v.getAsDouble());
            } else {
                buffer.put((byte) v.getAsInt());
            }
        }
        buffer.rewind();
        return post.scores(buffer);
    }
}
