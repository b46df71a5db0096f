// Where device-api listens and the path it takes our reports on, in a module with no imports:
// the device-api stand-in's checkers inside the power-cut VM (test/system/powercut-vm.ts), which
// run with nothing but node, import them too.

/** device-api's address on the printer, TOPE_DEVICE_API_URL's default. */
export const DEFAULT_DEVICE_API_URL = 'http://127.0.0.1:9080';
/** The path of device-api's endpoint that takes each status report (POST, JSON body). */
export const REPORT_PATH = '/api/v1.0/ota/report';
