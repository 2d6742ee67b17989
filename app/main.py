import guard
print("sensor app")
guard.confirm()
