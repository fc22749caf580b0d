package dev.kerascnn.core;

import dev.kerascnn.core.BundleMetadata.ChannelOrder;
import dev.kerascnn.core.BundleMetadata.Crop;
import dev.kerascnn.core.BundleMetadata.DType;
import dev.kerascnn.core.BundleMetadata.TensorSpec;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Raw pixels -> the model's input tensor, as kerascnn's Python pipeline makes it
 * ({@code kerascnn.data.to_model_input}, then {@code kerascnn.export.runtime.quantize}):
 *
 * <ol>
 *   <li>RGB -> L with {@code 0.299 R + 0.587 G + 0.114 B} when the model has one channel (before
 *       resizing, as in Python);</li>
 *   <li>center crop to the model's aspect ratio only if metadata says {@code input.crop: "center"}
 *       (kerascnn bundles have no such key today: the whole frame is resized, as Python does);</li>
 *   <li>resize with the metadata's method ({@link Resize}, TensorFlow's arithmetic);</li>
 *   <li>RGB -> BGR when {@code channel_order} is BGR; {@code x * scale + offset} per channel, in
 *       float32;</li>
 *   <li>for an integer input: {@code q = round_half_away_from_zero(x / scale) + zero_point},
 *       clamped to the dtype's range (computed in double, as NumPy does).</li>
 * </ol>
 *
 * <p>The tensor is NHWC with batch 1. Instances keep scratch buffers: use one per thread.
 */
public final class Preprocessor {

    /** Luma weights of {@code to_model_input}'s RGB -> L conversion. */
    public static final float GRAY_R = 0.299f;
    public static final float GRAY_G = 0.587f;
    public static final float GRAY_B = 0.114f;

    private final BundleMetadata metadata;
    private final TensorSpec input;
    private final int height;
    private final int width;
    private final int channels;
    private final float[] scale;
    private final float[] offset;
    private final float[] resized;
    private final float[] normalized;

    /** For the bundle's default TFLite file. */
    public Preprocessor(BundleMetadata metadata) {
        this(metadata, metadata.defaultModelFile().input);
    }

    /** For one of the bundle's files: {@code metadata.model(format).input}. */
    public Preprocessor(BundleMetadata metadata, TensorSpec input) {
        this.metadata = metadata;
        this.input = input;
        this.height = metadata.height;
        this.width = metadata.width;
        this.channels = metadata.channels;
        this.scale = metadata.scale();
        this.offset = metadata.offset();
        this.resized = new float[height * width * channels];
        this.normalized = new float[height * width * channels];
    }

    public int height() {
        return height;
    }

    public int width() {
        return width;
    }

    public int channels() {
        return channels;
    }

    public TensorSpec inputSpec() {
        return input;
    }

    /** A direct buffer in native byte order with room for one input tensor (what LiteRT takes). */
    public ByteBuffer allocateInput() {
        return ByteBuffer.allocateDirect(input.bytes()).order(ByteOrder.nativeOrder());
    }

    /** Android Bitmap pixels ({@code getPixels}: 0xAARRGGBB, alpha ignored), row-major. */
    public static Resize.Source argb(final int[] pixels, final int width, final int height) {
        checkSize(pixels.length, width, height, 1);
        return Resize.source(height, width, 3, (y, x, c) -> (pixels[y * width + x] >> (16 - 8 * c)) & 0xFF);
    }

    /** Interleaved RGB bytes (0..255), row-major. */
    public static Resize.Source rgb(final byte[] pixels, final int width, final int height) {
        checkSize(pixels.length, width, height, 3);
        return Resize.source(height, width, 3, (y, x, c) -> pixels[(y * width + x) * 3 + c] & 0xFF);
    }

    /** The normalised float input (x * scale + offset) for ARGB pixels; a new array. */
    public float[] normalizeArgb(int[] pixels, int width, int height) {
        return normalize(argb(pixels, width, height)).clone();
    }

    /** The normalised float input for RGB bytes; a new array. */
    public float[] normalizeRgb(byte[] pixels, int width, int height) {
        return normalize(rgb(pixels, width, height)).clone();
    }

    /** Fills {@code out} (from position 0) with the model input for ARGB pixels. */
    public void writeArgb(int[] pixels, int width, int height, ByteBuffer out) {
        write(normalize(argb(pixels, width, height)), out);
    }

    /** Fills {@code out} (from position 0) with the model input for RGB bytes. */
    public void writeRgb(byte[] pixels, int width, int height, ByteBuffer out) {
        write(normalize(rgb(pixels, width, height)), out);
    }

    /**
     * Normalises an RGB (3-channel) or L (1-channel) image: returns this instance's scratch array,
     * overwritten by the next call.
     */
    public float[] normalize(Resize.Source image) {
        Resize.Source source = toModelChannels(image);
        Resize.Region region = metadata.crop == Crop.CENTER
                ? Resize.centerCrop(source.height(), source.width(), height, width)
                : Resize.full(source.height(), source.width());
        Resize.resize(source, region, metadata.resizeMethod, height, width, resized);
        boolean bgr = metadata.channelOrder == ChannelOrder.BGR;
        for (int i = 0; i < resized.length; i += channels) {
            for (int c = 0; c < channels; c++) {
                float value = resized[i + (bgr ? channels - 1 - c : c)];
                normalized[i + c] = value * scale[c] + offset[c];
            }
        }
        return normalized;
    }

    /** Writes a normalised tensor into {@code out} as the input's dtype (quantizing if integer). */
    public void write(float[] values, ByteBuffer out) {
        if (values.length != input.elements()) {
            throw new IllegalArgumentException("write: " + values.length + " values for an input of "
                    + input.elements());
        }
        if (out.capacity() < input.bytes()) {
            throw new IllegalArgumentException("write: the buffer holds " + out.capacity()
                    + " bytes; the input needs " + input.bytes());
        }
        out.rewind();
        if (input.dtype == DType.FLOAT32) {
            for (float v : values) {
                out.putFloat(v);
            }
        } else {
            for (float v : values) {
                out.put((byte) quantize(v, input.scale, input.zeroPoint, input.dtype));
            }
        }
        out.rewind();
    }

    /** The quantized values (int8: -128..127, uint8: 0..255) of a normalised tensor. */
    public int[] quantize(float[] values) {
        if (!input.dtype.isInteger()) {
            throw new IllegalStateException("The input is " + input.dtype + "; nothing to quantize");
        }
        int[] q = new int[values.length];
        for (int i = 0; i < values.length; i++) {
            q[i] = quantize(values[i], input.scale, input.zeroPoint, input.dtype);
        }
        return q;
    }

    /**
     * TFLite's (and kerascnn's) rule: {@code round_half_away_from_zero(value / scale) + zeroPoint},
     * clamped to the dtype's range. The division is in double, as NumPy's is.
     */
    public static int quantize(float value, double scale, int zeroPoint, DType dtype) {
        double scaled = (double) value / scale;
        double rounded = Math.signum(scaled) * Math.floor(Math.abs(scaled) + 0.5);
        double q = rounded + zeroPoint;
        if (q < dtype.min) {
            return dtype.min;
        }
        if (q > dtype.max) {
            return dtype.max;
        }
        return (int) q;
    }

    private Resize.Source toModelChannels(final Resize.Source image) {
        int have = image.channels();
        if (have == channels) {
            return image;
        }
        if (have == 3 && channels == 1) {
            return Resize.source(image.height(), image.width(), 1, (y, x, c) ->
                    GRAY_R * image.get(y, x, 0) + GRAY_G * image.get(y, x, 1) + GRAY_B * image.get(y, x, 2));
        }
        if (have == 1 && channels == 3) {
            return Resize.source(image.height(), image.width(), 3, (y, x, c) -> image.get(y, x, 0));
        }
        throw new IllegalArgumentException("Cannot turn " + have + "-channel images into the model's "
                + channels + " channels");
    }

    private static void checkSize(int length, int width, int height, int perPixel) {
        if (width < 1 || height < 1 || (long) width * height * perPixel != length) {
            throw new IllegalArgumentException("Expected " + width + "x" + height + "x" + perPixel
                    + " values. Received: " + length);
        }
    }
}
