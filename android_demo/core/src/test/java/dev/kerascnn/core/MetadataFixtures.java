package dev.kerascnn.core;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

/** A metadata.json shaped like the exporter's, for tests that need a small one. */
final class MetadataFixtures {

    private MetadataFixtures() {
    }

    static JsonObject json(int classes, String activation) {
        StringBuilder names = new StringBuilder();
        for (int i = 0; i < classes; i++) {
            names.append(i == 0 ? "" : ",").append("\"c").append(i).append('"');
        }
        String text = "{"
                + "\"format_version\": 1, \"kerascnn_version\": \"0.1.0\", \"source_model\": \"test\","
                + "\"task\": \"classification\","
                + "\"input\": {\"shape\": [1, 4, 6, 3], \"layout\": \"NHWC\", \"pixel_range\": [0, 255],"
                + "  \"resize_method\": \"bilinear\","
                + "  \"normalization\": {\"scale\": [0.5, 0.25, 2.0], \"offset\": [-1.0, 0.0, 1.0],"
                + "    \"channel_order\": \"RGB\", \"mode\": \"custom\"},"
                + "  \"channels\": 3, \"quantization_rounding\": \"half_away_from_zero\"},"
                + "\"output\": {\"classes\": " + classes + ", \"activation\": \"" + activation + "\"},"
                + "\"labels_file\": \"labels.txt\", \"class_names\": [" + names + "],"
                + "\"default_model\": \"tflite_int8\","
                + "\"models\": {"
                + "  \"keras\": {\"file\": \"model.keras\", \"size_bytes\": 10},"
                + "  \"tflite_float32\": {\"file\": \"model_float32.tflite\", \"size_bytes\": 100,"
                + "    \"input\": {\"dtype\": \"float32\", \"shape\": [1, 4, 6, 3], \"scale\": 0.0, \"zero_point\": 0},"
                + "    \"output\": {\"dtype\": \"float32\", \"shape\": [1, " + classes + "], \"scale\": 0.0, \"zero_point\": 0}},"
                + "  \"tflite_int8\": {\"file\": \"model_int8.tflite\", \"size_bytes\": 50,"
                + "    \"input\": {\"dtype\": \"int8\", \"shape\": [1, 4, 6, 3], \"scale\": 0.05, \"zero_point\": -3},"
                + "    \"output\": {\"dtype\": \"int8\", \"shape\": [1, " + classes + "], \"scale\": 0.00390625, \"zero_point\": -128}}"
                + "}}";
        return JsonParser.parseString(text).getAsJsonObject();
    }

    static BundleMetadata metadata(int classes, String activation) {
        return BundleMetadata.parse(json(classes, activation).toString());
    }
}
