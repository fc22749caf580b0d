package dev.kerascnn.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The bundle's metadata.json (written by kerascnn.export.bundle), parsed and checked once, so that
 * the rest of the app can trust every field.
 *
 * <p>Only the TFLite entries of {@code models} are kept ("keras" and "saved_model" are not for the
 * phone). Unknown keys are ignored; a missing or inconsistent key the app needs is an
 * {@link IllegalArgumentException} that names the key.
 */
public final class BundleMetadata {

    /** The newest metadata format this code reads. */
    public static final int SUPPORTED_FORMAT_VERSION = 1;

    public enum ResizeMethod { BILINEAR, NEAREST }

    /** Order of the model's input channels: RGB, BGR (caffe-style models) or L (grayscale). */
    public enum ChannelOrder { RGB, BGR, L }

    /** Whether a frame is center-cropped to the model's aspect ratio before resizing. */
    public enum Crop { NONE, CENTER }

    public enum Activation { SOFTMAX, SIGMOID, NONE }

    public enum DType {
        FLOAT32(4, 0, 0), INT8(1, -128, 127), UINT8(1, 0, 255);

        public final int bytes;
        public final int min;
        public final int max;

        DType(int bytes, int min, int max) {
            this.bytes = bytes;
            this.min = min;
            this.max = max;
        }

        public boolean isInteger() {
            return this != FLOAT32;
        }
    }

    /** dtype, shape and quantization parameters of one input or output tensor of a file. */
    public static final class TensorSpec {
        public final DType dtype;
        private final int[] shape;
        /** Real value = (q - zeroPoint) * scale; 0 for float tensors. */
        public final double scale;
        public final int zeroPoint;

        public TensorSpec(DType dtype, int[] shape, double scale, int zeroPoint) {
            this.dtype = dtype;
            this.shape = shape.clone();
            this.scale = scale;
            this.zeroPoint = zeroPoint;
        }

        public int[] shape() {
            return shape.clone();
        }

        public int elements() {
            int n = 1;
            for (int d : shape) {
                n *= d;
            }
            return n;
        }

        public int bytes() {
            return elements() * dtype.bytes;
        }
    }

    /** One TFLite file of the bundle. */
    public static final class ModelFile {
        /** The bundle's name for the format, e.g. "tflite_int8". */
        public final String format;
        public final String file;
        public final long sizeBytes;
        public final TensorSpec input;
        public final TensorSpec output;

        ModelFile(String format, String file, long sizeBytes, TensorSpec input, TensorSpec output) {
            this.format = format;
            this.file = file;
            this.sizeBytes = sizeBytes;
            this.input = input;
            this.output = output;
        }
    }

    public final int formatVersion;
    public final String sourceModel;
    public final int height;
    public final int width;
    public final int channels;
    public final ResizeMethod resizeMethod;
    public final Crop crop;
    public final ChannelOrder channelOrder;
    private final float[] scale;
    private final float[] offset;
    public final String normalizationMode;
    public final int classes;
    public final Activation activation;
    public final String labelsFile;
    private final List<String> classNames;
    public final String defaultModel;
    private final Map<String, ModelFile> models;

    private BundleMetadata(JsonObject root) {
        formatVersion = getInt(root, "format_version");
        if (formatVersion > SUPPORTED_FORMAT_VERSION || formatVersion < 1) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "metadata.json has format_version %d; this app reads version %d or older. "
                            + "Update the app, or export the bundle with a matching kerascnn.",
                    formatVersion, SUPPORTED_FORMAT_VERSION));
        }
        if (root.has("task") && !"classification".equals(getString(root, "task"))) {
            throw new IllegalArgumentException("metadata.json: task must be 'classification'. Received: "
                    + getString(root, "task"));
        }
        sourceModel = root.has("source_model") ? getString(root, "source_model") : "";

        JsonObject input = getObject(root, "input");
        int[] shape = getInts(input, "input.shape");
        if (shape.length != 4 || shape[0] != 1 || shape[1] < 1 || shape[2] < 1) {
            throw new IllegalArgumentException("metadata.json: input.shape must be [1, H, W, C]. Received: "
                    + Arrays.toString(shape));
        }
        height = shape[1];
        width = shape[2];
        channels = getInt(input, "input.channels");
        if (channels != shape[3] || (channels != 1 && channels != 3)) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "metadata.json: input.channels must be 1 or 3 and equal input.shape[3]. Received: "
                            + "channels=%d, shape=%s", channels, Arrays.toString(shape)));
        }
        String layout = getString(input, "input.layout");
        if (!"NHWC".equals(layout)) {
            throw new IllegalArgumentException("metadata.json: input.layout must be 'NHWC'. Received: " + layout);
        }
        int[] range = getInts(input, "input.pixel_range");
        if (range.length != 2 || range[0] != 0 || range[1] != 255) {
            throw new IllegalArgumentException("metadata.json: input.pixel_range must be [0, 255]. Received: "
                    + Arrays.toString(range));
        }
        resizeMethod = parseEnum(ResizeMethod.class, getString(input, "input.resize_method"), "input.resize_method");
        crop = input.has("crop") ? parseEnum(Crop.class, getString(input, "input.crop"), "input.crop") : Crop.NONE;
        String rounding = getString(input, "input.quantization_rounding");
        if (!"half_away_from_zero".equals(rounding)) {
            throw new IllegalArgumentException("metadata.json: input.quantization_rounding must be "
                    + "'half_away_from_zero'. Received: " + rounding);
        }
        JsonObject norm = getObject(input, "input.normalization");
        scale = getFloats(norm, "input.normalization.scale");
        offset = getFloats(norm, "input.normalization.offset");
        if (scale.length != channels || offset.length != channels) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "metadata.json: input.normalization.scale and .offset need one value per channel (%d). "
                            + "Received: %d and %d values", channels, scale.length, offset.length));
        }
        channelOrder = parseEnum(ChannelOrder.class, getString(norm, "input.normalization.channel_order"),
                "input.normalization.channel_order");
        if ((channelOrder == ChannelOrder.L) != (channels == 1)) {
            throw new IllegalArgumentException("metadata.json: input.normalization.channel_order must be 'L' "
                    + "for 1 channel and 'RGB' or 'BGR' for 3. Received: " + channelOrder + " with "
                    + channels + " channel(s)");
        }
        normalizationMode = norm.has("mode") ? getString(norm, "input.normalization.mode") : "";

        JsonObject output = getObject(root, "output");
        classes = getInt(output, "output.classes");
        if (classes < 1) {
            throw new IllegalArgumentException("metadata.json: output.classes must be positive. Received: " + classes);
        }
        activation = parseEnum(Activation.class, getString(output, "output.activation"), "output.activation");
        labelsFile = root.has("labels_file") ? getString(root, "labels_file") : "labels.txt";
        if (root.has("class_names")) {
            classNames = Collections.unmodifiableList(getStrings(root, "class_names"));
            if (classNames.size() != classes) {
                throw new IllegalArgumentException(String.format(Locale.ROOT,
                        "metadata.json: class_names has %d names; output.classes is %d",
                        classNames.size(), classes));
            }
        } else {
            classNames = Collections.emptyList();
        }

        Map<String, ModelFile> files = new LinkedHashMap<String, ModelFile>();
        JsonObject entries = getObject(root, "models");
        for (Map.Entry<String, JsonElement> entry : entries.entrySet()) {
            if (!entry.getKey().startsWith("tflite_")) {
                continue;
            }
            files.put(entry.getKey(), parseModel(entry.getKey(), entry.getValue().getAsJsonObject(), shape));
        }
        models = Collections.unmodifiableMap(files);
        if (models.isEmpty()) {
            throw new IllegalArgumentException("metadata.json: models has no TFLite file "
                    + "(export with formats including 'tflite_float32' or 'tflite_int8')");
        }
        defaultModel = getString(root, "default_model");
        if (!models.containsKey(defaultModel)) {
            throw new IllegalArgumentException("metadata.json: default_model '" + defaultModel
                    + "' is not among the TFLite files " + models.keySet());
        }
    }

    /** Parses and checks the text of a metadata.json. */
    public static BundleMetadata parse(String json) {
        JsonElement root;
        try {
            root = JsonParser.parseString(json);
        } catch (JsonParseException e) {
            throw new IllegalArgumentException("metadata.json is not valid JSON: " + e.getMessage(), e);
        }
        if (!root.isJsonObject()) {
            throw new IllegalArgumentException("metadata.json must hold a JSON object");
        }
        return new BundleMetadata(root.getAsJsonObject());
    }

    /**
     * Class names from the labels file (one per line; a final newline is optional), checked against
     * output.classes.
     */
    public List<String> parseLabels(String labelsText) {
        List<String> labels = new ArrayList<String>(Arrays.asList(labelsText.split("\r?\n", -1)));
        if (!labels.isEmpty() && labels.get(labels.size() - 1).isEmpty()) {
            labels.remove(labels.size() - 1);
        }
        if (labels.size() != classes) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "%s has %d lines; the model has %d classes", labelsFile, labels.size(), classes));
        }
        return Collections.unmodifiableList(labels);
    }

    /** The class names in metadata.json, or class_0, class_1, ... when it has none. */
    public List<String> classNames() {
        if (!classNames.isEmpty()) {
            return classNames;
        }
        List<String> names = new ArrayList<String>(classes);
        for (int i = 0; i < classes; i++) {
            names.add("class_" + i);
        }
        return Collections.unmodifiableList(names);
    }

    public float[] scale() {
        return scale.clone();
    }

    public float[] offset() {
        return offset.clone();
    }

    /** The TFLite files by format name ("tflite_float32", "tflite_int8", ...). */
    public Map<String, ModelFile> models() {
        return models;
    }

    public ModelFile model(String format) {
        ModelFile file = models.get(format);
        if (file == null) {
            throw new IllegalArgumentException("The bundle has no '" + format + "' file; it has " + models.keySet());
        }
        return file;
    }

    public ModelFile defaultModelFile() {
        return models.get(defaultModel);
    }

    private ModelFile parseModel(String format, JsonObject entry, int[] inputShape) {
        String where = "models." + format;
        String file = getString(entry, where + ".file");
        long size = entry.has("size_bytes") ? entry.get("size_bytes").getAsLong() : -1L;
        TensorSpec in = parseTensor(getObject(entry, where + ".input"), where + ".input");
        TensorSpec out = parseTensor(getObject(entry, where + ".output"), where + ".output");
        if (!Arrays.equals(in.shape, inputShape)) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "metadata.json: %s.input.shape %s differs from input.shape %s",
                    where, Arrays.toString(in.shape), Arrays.toString(inputShape)));
        }
        if (out.shape.length != 2 || out.shape[0] != 1 || out.shape[1] != classes) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "metadata.json: %s.output.shape must be [1, %d]. Received: %s",
                    where, classes, Arrays.toString(out.shape)));
        }
        return new ModelFile(format, file, size, in, out);
    }

    private static TensorSpec parseTensor(JsonObject tensor, String where) {
        DType dtype = parseEnum(DType.class, getString(tensor, "dtype"), where + ".dtype");
        int[] shape = getInts(tensor, where + ".shape");
        double scale = tensor.has("scale") ? tensor.get("scale").getAsDouble() : 0.0;
        int zeroPoint = tensor.has("zero_point") ? tensor.get("zero_point").getAsInt() : 0;
        if (dtype.isInteger()) {
            if (!(scale > 0.0) || Double.isInfinite(scale)) {
                throw new IllegalArgumentException(where + ".scale must be positive for " + dtype
                        + " tensors. Received: " + scale);
            }
            if (zeroPoint < dtype.min || zeroPoint > dtype.max) {
                throw new IllegalArgumentException(where + ".zero_point " + zeroPoint + " is outside the "
                        + dtype + " range");
            }
        }
        return new TensorSpec(dtype, shape, scale, zeroPoint);
    }

    // ---- small JSON helpers that name the missing key ------------------------------------------

    private static JsonElement get(JsonObject object, String key) {
        String name = key.substring(key.lastIndexOf('.') + 1);
        JsonElement value = object.get(name);
        if (value == null || value.isJsonNull()) {
            throw new IllegalArgumentException("metadata.json: missing key '" + key + "'");
        }
        return value;
    }

    private static JsonObject getObject(JsonObject object, String key) {
        JsonElement value = get(object, key);
        if (!value.isJsonObject()) {
            throw new IllegalArgumentException("metadata.json: '" + key + "' must be an object");
        }
        return value.getAsJsonObject();
    }

    private static String getString(JsonObject object, String key) {
        JsonElement value = get(object, key);
        if (!value.isJsonPrimitive() || !value.getAsJsonPrimitive().isString()) {
            throw new IllegalArgumentException("metadata.json: '" + key + "' must be a string");
        }
        return value.getAsString();
    }

    private static int getInt(JsonObject object, String key) {
        JsonElement value = get(object, key);
        if (!value.isJsonPrimitive() || !value.getAsJsonPrimitive().isNumber()) {
            throw new IllegalArgumentException("metadata.json: '" + key + "' must be a number");
        }
        return value.getAsInt();
    }

    private static JsonArray getArray(JsonObject object, String key) {
        JsonElement value = get(object, key);
        if (!value.isJsonArray()) {
            throw new IllegalArgumentException("metadata.json: '" + key + "' must be a list");
        }
        return value.getAsJsonArray();
    }

    private static int[] getInts(JsonObject object, String key) {
        JsonArray array = getArray(object, key);
        int[] values = new int[array.size()];
        for (int i = 0; i < values.length; i++) {
            values[i] = array.get(i).getAsInt();
        }
        return values;
    }

    private static float[] getFloats(JsonObject object, String key) {
        JsonArray array = getArray(object, key);
        float[] values = new float[array.size()];
        for (int i = 0; i < values.length; i++) {
            // JSON holds doubles; NumPy casts them to float32 the same way (round to nearest).
            values[i] = (float) array.get(i).getAsDouble();
        }
        return values;
    }

    private static List<String> getStrings(JsonObject object, String key) {
        JsonArray array = getArray(object, key);
        List<String> values = new ArrayList<String>(array.size());
        for (JsonElement element : array) {
            values.add(element.getAsString());
        }
        return values;
    }

    private static <E extends Enum<E>> E parseEnum(Class<E> type, String value, String key) {
        for (E constant : type.getEnumConstants()) {
            if (constant.name().equalsIgnoreCase(value)) {
                return constant;
            }
        }
        List<String> allowed = new ArrayList<String>();
        for (E constant : type.getEnumConstants()) {
            // the spelling kerascnn writes: "RGB", "L", but "bilinear", "int8", "softmax"
            allowed.add(type == ChannelOrder.class ? constant.name() : constant.name().toLowerCase(Locale.ROOT));
        }
        throw new IllegalArgumentException("metadata.json: " + key + " must be one of " + allowed
                + ". Received: '" + value + "'");
    }
}
