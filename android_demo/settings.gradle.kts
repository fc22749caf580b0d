pluginManagement {
    repositories {
        google {
            content {
                includeGroupByRegex("com\\.android.*")
                includeGroupByRegex("com\\.google.*")
                includeGroupByRegex("androidx.*")
            }
        }
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()        // AndroidX, CameraX, LiteRT (com.google.ai.edge.litert)
        mavenCentral()  // Gson, JUnit
    }
}

rootProject.name = "kerascnn-android-demo"

// :core is plain Java (no Android dependency): the pixel -> tensor -> ranked labels code, unit
// tested on any JVM (the repository's CI compiles and runs it with javac, see README.md).
include(":app", ":core")
