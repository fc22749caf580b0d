package dev.kerascnn.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/** Reads the fixtures that scripts/make_android_golden.py writes under resources/golden/. */
final class Golden {

    private Golden() {
    }

    static String text(String name) {
        try (InputStream in = Golden.class.getResourceAsStream("/golden/" + name)) {
            if (in == null) {
                throw new IllegalStateException("Missing test resource golden/" + name
                        + " (run scripts/make_android_golden.py)");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    static JsonObject json(String name) {
        return JsonParser.parseString(text(name)).getAsJsonObject();
    }

    /** base64 of zlib-compressed little-endian bytes. */
    static byte[] blob(String encoded) {
        byte[] compressed = Base64.getDecoder().decode(encoded);
        Inflater inflater = new Inflater();
        inflater.setInput(compressed);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] chunk = new byte[8192];
        try {
            while (!inflater.finished()) {
                int n = inflater.inflate(chunk);
                if (n == 0 && (inflater.needsInput() || inflater.needsDictionary())) {
                    throw new IllegalStateException("truncated zlib data");
                }
                out.write(chunk, 0, n);
            }
        } catch (DataFormatException e) {
            throw new IllegalStateException(e);
        } finally {
            inflater.end();
        }
        return out.toByteArray();
    }

    static float[] floats(String encoded) {
        ByteBuffer buffer = ByteBuffer.wrap(blob(encoded)).order(ByteOrder.LITTLE_ENDIAN);
        float[] values = new float[buffer.remaining() / 4];
        buffer.asFloatBuffer().get(values);
        return values;
    }

    /** int8 as -128..127, uint8 as 0..255. */
    static int[] ints(String encoded, String dtype) {
        byte[] bytes = blob(encoded);
        int[] values = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            values[i] = "uint8".equals(dtype) ? bytes[i] & 0xFF : bytes[i];
        }
        return values;
    }

    static float[] floatArray(JsonArray array) {
        float[] values = new float[array.size()];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) array.get(i).getAsDouble();
        }
        return values;
    }

    static int[] intArray(JsonArray array) {
        int[] values = new int[array.size()];
        for (int i = 0; i < values.length; i++) {
            values[i] = array.get(i).getAsInt();
        }
        return values;
    }

    static List<String> strings(JsonArray array) {
        List<String> values = new ArrayList<>();
        for (JsonElement e : array) {
            values.add(e.getAsString());
        }
        return values;
    }

    /** One raw RGB image of images.json. */
    static final class Image {
        final String name;
        final int height;
        final int width;
        final byte[] rgb;

        Image(String name, JsonObject entry) {
            this.name = name;
            this.height = entry.get("height").getAsInt();
            this.width = entry.get("width").getAsInt();
            this.rgb = blob(entry.get("rgb").getAsString());
            if (rgb.length != height * width * 3) {
                throw new IllegalStateException(name + ": " + rgb.length + " bytes");
            }
        }

        /** The same pixels as an Android Bitmap's getPixels() returns them (opaque ARGB). */
        int[] argb() {
            int[] pixels = new int[height * width];
            for (int i = 0; i < pixels.length; i++) {
                int r = rgb[3 * i] & 0xFF;
                int g = rgb[3 * i + 1] & 0xFF;
                int b = rgb[3 * i + 2] & 0xFF;
                pixels[i] = 0xFF000000 | (r << 16) | (g << 8) | b;
            }
            return pixels;
        }
    }

    static Image image(String name) {
        return new Image(name, json("images.json").getAsJsonObject(name));
    }

    static List<String> bundles() {
        return strings(json("index.json").getAsJsonArray("bundles"));
    }
}
