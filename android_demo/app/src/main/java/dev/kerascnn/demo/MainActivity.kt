package dev.kerascnn.demo

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.graphics.Matrix
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.view.View
import android.widget.Button
import android.widget.ImageView
import android.widget.TextView
import android.widget.Toast
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.appcompat.widget.SwitchCompat
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Live camera (or a gallery image) -> the bundle's classifier -> top-3 classes and timings.
 *
 * Every use of the [Classifier] (create, classify, close) runs on [worker], one thread, so the
 * CPU/GPU switch never races a frame.
 */
class MainActivity : AppCompatActivity() {

    private lateinit var preview: PreviewView
    private lateinit var picked: ImageView
    private lateinit var results: TextView
    private lateinit var timing: TextView
    private lateinit var gpuSwitch: SwitchCompat

    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private var classifier: Classifier? = null  // touched on [worker] only

    @Volatile
    private var showingPicked = false

    private val cameraPermission =
        registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            if (granted) startCamera() else results.setText(R.string.camera_denied)
        }

    private val pickImage =
        registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
            if (uri != null) classifyPicked(uri)
        }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        preview = findViewById(R.id.preview)
        picked = findViewById(R.id.picked)
        results = findViewById(R.id.results)
        timing = findViewById(R.id.timing)
        gpuSwitch = findViewById(R.id.gpu)

        findViewById<Button>(R.id.pick).setOnClickListener {
            pickImage.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        picked.setOnClickListener {  // back to the live camera
            showingPicked = false
            picked.visibility = View.GONE
        }
        gpuSwitch.setOnCheckedChangeListener { _, useGpu -> loadClassifier(useGpu) }
        loadClassifier(useGpu = false)

        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            cameraPermission.launch(Manifest.permission.CAMERA)
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        worker.execute {
            classifier?.close()
            classifier = null
        }
        worker.shutdown()
    }

    private fun loadClassifier(useGpu: Boolean) = worker.execute {
        classifier?.close()
        classifier = null
        try {
            val loaded = Classifier(applicationContext, useGpu)
            classifier = loaded
            runOnUiThread { timing.text = loaded.describe() }
        } catch (e: Exception) {
            runOnUiThread {
                if (useGpu) {
                    Toast.makeText(this, getString(R.string.gpu_unavailable, e.message), Toast.LENGTH_LONG).show()
                    gpuSwitch.isChecked = false  // reloads on the CPU through the listener
                } else {
                    results.text = "Cannot load the bundle: ${e.message}"
                }
            }
        }
    }

    private fun startCamera() {
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            val provider = providerFuture.get()
            val previewUseCase = Preview.Builder().build().also { it.setSurfaceProvider(preview.surfaceProvider) }
            val analysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(worker, ::analyze)
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, previewUseCase, analysis)
        }, ContextCompat.getMainExecutor(this))
    }

    /** Runs on [worker]. */
    private fun analyze(image: ImageProxy) {
        image.use {
            val current = classifier
            if (current == null || showingPicked) return
            val frame = it.toBitmap().rotated(it.imageInfo.rotationDegrees)
            show(current.classify(frame), current)
        }
    }

    private fun classifyPicked(uri: Uri) {
        showingPicked = true
        worker.execute {
            val bitmap = try {
                decode(uri)
            } catch (e: Exception) {
                runOnUiThread { results.text = "Cannot read the image: ${e.message}" }
                return@execute
            }
            runOnUiThread {
                picked.setImageBitmap(bitmap)
                picked.visibility = View.VISIBLE
            }
            classifier?.let { show(it.classify(bitmap), it) }
        }
    }

    private fun show(result: Classifier.Result, from: Classifier) {
        val lines = result.top.mapIndexed { rank, r ->
            String.format(Locale.ROOT, "%d. %-18s %5.1f%%", rank + 1, r.label, 100f * r.confidence)
        }
        val times = String.format(
            Locale.ROOT, "inference %.1f ms · preprocessing %.1f ms\n%s",
            result.inferenceMs, result.preprocessMs, from.describe(),
        )
        runOnUiThread {
            results.text = lines.joinToString("\n")
            timing.text = times
        }
    }

    /** A software bitmap (getPixels cannot read hardware ones), at most [MAX_SIDE] pixels a side. */
    private fun decode(uri: Uri): Bitmap {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) {
            val source = ImageDecoder.createSource(contentResolver, uri)
            return ImageDecoder.decodeBitmap(source) { decoder, info, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
                decoder.setTargetSampleSize(sampleSize(info.size.width, info.size.height))
            }
        }
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, bounds) }
        val options = BitmapFactory.Options().apply { inSampleSize = sampleSize(bounds.outWidth, bounds.outHeight) }
        return contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, options) }
            ?: error("unreadable image")
    }

    private fun Bitmap.rotated(degrees: Int): Bitmap =
        if (degrees == 0) this
        else Bitmap.createBitmap(this, 0, 0, width, height, Matrix().apply { postRotate(degrees.toFloat()) }, false)

    private companion object {
        const val MAX_SIDE = 2048

        /** Power-of-two subsampling of large photos (memory); the model still sees a plain resize. */
        fun sampleSize(width: Int, height: Int): Int {
            var sample = 1
            while (maxOf(width, height) / (sample * 2) >= MAX_SIDE) sample *= 2
            return sample
        }
    }
}
