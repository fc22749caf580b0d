package dev.kerascnn.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;

import dev.kerascnn.core.BundleMetadata.ModelFile;

import java.util.Arrays;
import java.util.function.Consumer;

import org.junit.Test;

public class BundleMetadataTest {

    private static void assertRejected(String expectedInMessage, Consumer<JsonObject> edit) {
        JsonObject json = MetadataFixtures.json(3, "softmax");
        edit.accept(json);
        try {
            BundleMetadata.parse(json.toString());
            fail("accepted metadata that should fail with: " + expectedInMessage);
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(expectedInMessage));
        }
    }

    private static JsonObject input(JsonObject json) {
        return json.getAsJsonObject("input");
    }

    private static JsonObject model(JsonObject json, String format) {
        return json.getAsJsonObject("models").getAsJsonObject(format);
    }

    @Test
    public void readsWhatTheAppNeeds() {
        BundleMetadata m = MetadataFixtures.metadata(3, "softmax");
        assertEquals(1, m.formatVersion);
        assertEquals(4, m.height);
        assertEquals(6, m.width);
        assertEquals(3, m.channels);
        assertEquals(BundleMetadata.ResizeMethod.BILINEAR, m.resizeMethod);
        assertEquals(BundleMetadata.Crop.NONE, m.crop);
        assertEquals(BundleMetadata.ChannelOrder.RGB, m.channelOrder);
        assertArrayEquals(new float[] {0.5f, 0.25f, 2f}, m.scale(), 0f);
        assertArrayEquals(new float[] {-1f, 0f, 1f}, m.offset(), 0f);
        assertEquals(BundleMetadata.Activation.SOFTMAX, m.activation);
        assertEquals(Arrays.asList("c0", "c1", "c2"), m.classNames());
        assertEquals("labels.txt", m.labelsFile);
        // only TFLite files; the default is the int8 one
        assertEquals(Arrays.asList("tflite_float32", "tflite_int8"), Arrays.asList(m.models().keySet().toArray()));
        ModelFile file = m.defaultModelFile();
        assertEquals("model_int8.tflite", file.file);
        assertEquals(BundleMetadata.DType.INT8, file.input.dtype);
        assertEquals(0.05, file.input.scale, 0.0);
        assertEquals(-3, file.input.zeroPoint);
        assertArrayEquals(new int[] {1, 4, 6, 3}, file.input.shape());
        assertEquals(72, file.input.bytes());
        assertEquals(4 * 72, m.model("tflite_float32").input.bytes());
    }

    @Test
    public void labelsFileIsCheckedAgainstTheClasses() {
        BundleMetadata m = MetadataFixtures.metadata(3, "softmax");
        assertEquals(Arrays.asList("x", "y", "z"), m.parseLabels("x\ny\nz\n"));
        assertEquals(Arrays.asList("x", "y", "z"), m.parseLabels("x\r\ny\r\nz"));
        assertEquals(Arrays.asList("", "T-shirt/top", "z"), m.parseLabels("\nT-shirt/top\nz\n"));
        try {
            m.parseLabels("x\ny\n");
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().contains("labels.txt has 2 lines"));
        }
    }

    @Test
    public void optionalKeysHaveDefaults() {
        JsonObject json = MetadataFixtures.json(2, "none");
        json.remove("class_names");
        json.remove("labels_file");
        input(json).addProperty("crop", "center");
        BundleMetadata m = BundleMetadata.parse(json.toString());
        assertEquals(Arrays.asList("class_0", "class_1"), m.classNames());
        assertEquals("labels.txt", m.labelsFile);
        assertEquals(BundleMetadata.Crop.CENTER, m.crop);
        assertEquals(BundleMetadata.Activation.NONE, m.activation);
    }

    @Test
    public void rejectsWhatTheAppCannotRun() {
        assertRejected("format_version 2", j -> j.addProperty("format_version", 2));
        assertRejected("'input.layout' must be", j -> input(j).add("layout", new JsonArray()));
        assertRejected("input.layout must be 'NHWC'", j -> input(j).addProperty("layout", "NCHW"));
        assertRejected("missing key 'input.resize_method'", j -> input(j).remove("resize_method"));
        assertRejected("input.resize_method must be one of [bilinear, nearest]. Received: 'bicubic'",
                j -> input(j).addProperty("resize_method", "bicubic"));
        assertRejected("input.pixel_range", j -> {
            JsonArray range = new JsonArray();
            range.add(new JsonPrimitive(0));
            range.add(new JsonPrimitive(1));
            input(j).add("pixel_range", range);
        });
        assertRejected("half_away_from_zero", j -> input(j).addProperty("quantization_rounding", "half_even"));
        assertRejected("input.channels must be 1 or 3", j -> input(j).addProperty("channels", 1));
        assertRejected("one value per channel", j -> input(j).getAsJsonObject("normalization")
                .getAsJsonArray("scale").remove(0));
        assertRejected("channel_order must be 'L'", j -> input(j).getAsJsonObject("normalization")
                .addProperty("channel_order", "L"));
        assertRejected("must be one of [RGB, BGR, L]", j -> input(j).getAsJsonObject("normalization")
                .addProperty("channel_order", "YUV"));
        assertRejected("class_names has 2 names", j -> j.getAsJsonArray("class_names").remove(0));
        assertRejected("output.activation", j -> j.getAsJsonObject("output").addProperty("activation", "relu"));
        assertRejected("task must be 'classification'", j -> j.addProperty("task", "segmentation"));
        assertRejected("default_model 'tflite_float16'", j -> j.addProperty("default_model", "tflite_float16"));
        assertRejected("models.tflite_int8.input.scale must be positive",
                j -> model(j, "tflite_int8").getAsJsonObject("input").addProperty("scale", 0.0));
        assertRejected("models.tflite_int8.input.zero_point 200",
                j -> model(j, "tflite_int8").getAsJsonObject("input").addProperty("zero_point", 200));
        assertRejected("models.tflite_int8.input.dtype must be one of [float32, int8, uint8]",
                j -> model(j, "tflite_int8").getAsJsonObject("input").addProperty("dtype", "int16"));
        assertRejected("differs from input.shape", j -> model(j, "tflite_float32").getAsJsonObject("input")
                .getAsJsonArray("shape").set(1, new JsonPrimitive(5)));
        assertRejected("output.shape must be [1, 3]", j -> model(j, "tflite_float32").getAsJsonObject("output")
                .getAsJsonArray("shape").set(1, new JsonPrimitive(4)));
        assertRejected("no TFLite file", j -> {
            j.getAsJsonObject("models").remove("tflite_float32");
            j.getAsJsonObject("models").remove("tflite_int8");
        });
    }

    @Test
    public void invalidJsonIsAClearError() {
        try {
            BundleMetadata.parse("{\"format_version\": 1,");
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().startsWith("metadata.json is not valid JSON"));
        }
        try {
            BundleMetadata.parse("[1, 2]");
            fail();
        } catch (IllegalArgumentException e) {
            assertFalse(e.getMessage().isEmpty());
        }
    }
}
