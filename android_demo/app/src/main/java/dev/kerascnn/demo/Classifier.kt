package dev.kerascnn.demo

import android.content.Context
import android.graphics.Bitmap
import android.os.SystemClock
import dev.kerascnn.core.BundleMetadata
import dev.kerascnn.core.Postprocessor
import dev.kerascnn.core.Preprocessor
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.Closeable
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/**
 * The bundle in assets/[assetDir] (metadata.json, labels.txt, the .tflite files) run with LiteRT.
 * Everything model-specific (input size, channels, normalisation, quantization, labels, output
 * activation) comes from metadata.json through :core, so any kerascnn classifier bundle works.
 *
 * Not thread-safe: create, use and close it on one thread.
 */
class Classifier(
    context: Context,
    val useGpu: Boolean,
    assetDir: String = "bundle",
    format: String? = null,  // a key of metadata.json's "models"; null: its default_model
) : Closeable {

    data class Result(
        val top: List<Postprocessor.Recognition>,
        val preprocessMs: Double,
        val inferenceMs: Double,
    )

    val metadata: BundleMetadata
    val model: BundleMetadata.ModelFile
    private val preprocessor: Preprocessor
    private val postprocessor: Postprocessor
    private val gpuDelegate: GpuDelegate?
    private val interpreter: Interpreter
    private val input: ByteBuffer
    private val output: ByteBuffer
    private var pixels = IntArray(0)

    init {
        val assets = context.assets
        metadata = BundleMetadata.parse(assets.open("$assetDir/metadata.json").bufferedReader().use { it.readText() })
        val labelsText = runCatching {
            assets.open("$assetDir/${metadata.labelsFile}").bufferedReader().use { it.readText() }
        }.getOrNull()
        val labels = labelsText?.let { metadata.parseLabels(it) } ?: metadata.classNames()
        model = if (format == null) metadata.defaultModelFile() else metadata.model(format)
        preprocessor = Preprocessor(metadata, model.input)
        postprocessor = Postprocessor(metadata, model.output, labels)

        val options = Interpreter.Options()
        if (useGpu) {
            val compatibility = CompatibilityList()
            check(compatibility.isDelegateSupportedOnThisDevice) { "this GPU is not on LiteRT's list" }
            val delegate = GpuDelegate(compatibility.bestOptionsForThisDevice)
            gpuDelegate = delegate
            options.addDelegate(delegate)
        } else {
            gpuDelegate = null
            options.setUseXNNPACK(true)
            options.setNumThreads(Runtime.getRuntime().availableProcessors().coerceIn(1, 4))
        }
        interpreter = try {
            Interpreter(mapAsset(context, "$assetDir/${model.file}"), options).also {
                try {
                    checkTensors(it)
                } catch (e: Exception) {
                    it.close()
                    throw e
                }
            }
        } catch (e: Exception) {
            gpuDelegate?.close()
            throw e
        }
        input = preprocessor.allocateInput()
        output = postprocessor.allocateOutput()
    }

    /** Top-[k] classes of an image (any size; ARGB_8888 or any software Bitmap config). */
    fun classify(bitmap: Bitmap, k: Int = 3): Result {
        val width = bitmap.width
        val height = bitmap.height
        if (pixels.size != width * height) pixels = IntArray(width * height)
        bitmap.getPixels(pixels, 0, width, 0, 0, width, height)
        val start = SystemClock.elapsedRealtimeNanos()
        preprocessor.writeArgb(pixels, width, height, input)
        val preprocessed = SystemClock.elapsedRealtimeNanos()
        output.rewind()
        interpreter.run(input, output)
        val done = SystemClock.elapsedRealtimeNanos()
        return Result(postprocessor.topK(output, k), (preprocessed - start) / 1e6, (done - preprocessed) / 1e6)
    }

    fun describe(): String =
        "${metadata.sourceModel} · ${model.file} (${model.input.dtype.name.lowercase()}) · " +
            "${metadata.height}x${metadata.width}x${metadata.channels} · ${if (useGpu) "GPU delegate" else "CPU (XNNPACK)"}"

    override fun close() {
        interpreter.close()
        gpuDelegate?.close()
    }

    /** metadata.json must describe the file it ships with; a mismatch is a broken bundle. */
    private fun checkTensors(interpreter: Interpreter) {
        val expected = mapOf(
            BundleMetadata.DType.FLOAT32 to DataType.FLOAT32,
            BundleMetadata.DType.INT8 to DataType.INT8,
            BundleMetadata.DType.UINT8 to DataType.UINT8,
        )
        val inTensor = interpreter.getInputTensor(0)
        val outTensor = interpreter.getOutputTensor(0)
        check(inTensor.shape().contentEquals(model.input.shape()) && inTensor.dataType() == expected[model.input.dtype]) {
            "${model.file}: input ${inTensor.dataType()} ${inTensor.shape().contentToString()} differs from metadata.json"
        }
        check(outTensor.shape().contentEquals(model.output.shape()) && outTensor.dataType() == expected[model.output.dtype]) {
            "${model.file}: output ${outTensor.dataType()} ${outTensor.shape().contentToString()} differs from metadata.json"
        }
    }

    private companion object {
        /** Memory-maps an uncompressed asset (app/build.gradle.kts keeps .tflite uncompressed). */
        fun mapAsset(context: Context, path: String): MappedByteBuffer =
            context.assets.openFd(path).use { fd ->
                FileInputStream(fd.fileDescriptor).use { stream ->
                    stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
    }
}
