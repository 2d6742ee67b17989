# The app under test: a greeting, a computation from its own module, then it confirms the
# update (an app that never calls guard.confirm() is rolled back after its trial boots).
import counter
import guard

print("hello from the example app", counter.VERSION)
print("counter says", counter.total([1, 2, 3]))
guard.confirm()
