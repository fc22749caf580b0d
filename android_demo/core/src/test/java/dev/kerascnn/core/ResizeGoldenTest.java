package dev.kerascnn.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.util.Map;

import org.junit.Test;

/** {@link Resize} against keras.ops.image.resize (TensorFlow) on small images: value for value. */
public class ResizeGoldenTest {

    @Test
    public void resizeMatchesKerasExactly() {
        int checked = 0;
        for (JsonElement element : Golden.json("resize.json").getAsJsonArray("cases")) {
            JsonObject c = element.getAsJsonObject();
            int h = c.get("height").getAsInt();
            int w = c.get("width").getAsInt();
            int ch = c.get("channels").getAsInt();
            int oh = c.get("out_height").getAsInt();
            int ow = c.get("out_width").getAsInt();
            Resize.FloatImage image = new Resize.FloatImage(Golden.floatArray(c.getAsJsonArray("input")), h, w, ch);
            for (Map.Entry<String, JsonElement> e : c.getAsJsonObject("expected").entrySet()) {
                String[] variant = e.getKey().split("/");
                BundleMetadata.ResizeMethod method = BundleMetadata.ResizeMethod.valueOf(variant[0].toUpperCase());
                Resize.Region region = "center".equals(variant[1])
                        ? Resize.centerCrop(h, w, oh, ow) : Resize.full(h, w);
                float[] actual = new float[oh * ow * ch];
                Resize.resize(image, region, method, oh, ow, actual);
                float[] expected = Golden.floatArray(e.getValue().getAsJsonArray());
                String where = h + "x" + w + "x" + ch + " -> " + oh + "x" + ow + " " + e.getKey();
                assertEquals(where, expected.length, actual.length);
                for (int i = 0; i < expected.length; i++) {
                    assertEquals(where + " element " + i, expected[i], actual[i], 0f);
                }
                checked++;
            }
        }
        assertTrue(checked >= 20);
    }

    @Test
    public void centerCropMatchesKerasForCameraFrames() {
        // keras.ops.image.resize(crop_to_aspect_ratio=True): a 480x640 frame to a square model
        // keeps the middle 480x480; a portrait frame keeps the middle rows.
        Resize.Region r = Resize.centerCrop(480, 640, 224, 224);
        assertEquals(0, r.top);
        assertEquals(80, r.left);
        assertEquals(480, r.height);
        assertEquals(480, r.width);
        r = Resize.centerCrop(641, 480, 96, 96);
        assertEquals(80, r.top);
        assertEquals(0, r.left);
        assertEquals(480, r.height);
        assertEquals(480, r.width);
    }
}
