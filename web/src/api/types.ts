/**
 * Names for the API's types, derived from operations in the generated schema (never hand-copied),
 * so they follow the backend whatever it calls its models.
 */
import type { RequestOf, ResponseOf } from './client'

export type User = ResponseOf<'/api/auth/me', 'get'>
export type Role = User['role']
export type LoginResult = ResponseOf<'/api/auth/login', 'post'>
export type UserCreate = RequestOf<'/api/users', 'post'>
export type UserPatch = RequestOf<'/api/users/{user_id}', 'patch'>
export type Region = ResponseOf<'/api/regions', 'get'>[number]
export type Department = ResponseOf<'/api/departments', 'get'>[number]
export type Camera = ResponseOf<'/api/cameras/{camera_id}', 'get'>
export type CameraStatus = Camera['status']
export type CameraState = CameraStatus['state']
export type CameraStatusFeed = ResponseOf<'/api/cameras/status', 'get'>
export type CameraStatusBrief = CameraStatusFeed['cameras'][number]
export type CameraFigures = ResponseOf<'/api/cameras/figures', 'get'>[number]
export type CameraIn = RequestOf<'/api/cameras', 'post'>
export type CameraPatch = RequestOf<'/api/cameras/{camera_id}', 'patch'>
export type RecordingMode = NonNullable<CameraIn['recording_mode']>
export type PlanRange = NonNullable<CameraIn['recording_plan']>[number]
export type ImportResult = ResponseOf<'/api/cameras/import', 'post'>
export type ImportRowError = ImportResult['errors'][number]
export type CameraEvent = ResponseOf<'/api/cameras/{camera_id}/events', 'get'>[number]
export type Recordings = ResponseOf<'/api/cameras/{camera_id}/recordings', 'get'>
export type Gap = Recordings['gaps'][number]
export type DeviceRecordings = ResponseOf<'/api/cameras/{camera_id}/device-recordings', 'get'>
export type DeviceRecording = DeviceRecordings['recordings'][number]
export type GapCause = Gap['cause']
export type Integrity = ResponseOf<'/api/cameras/{camera_id}/integrity', 'get'>
export type ExportOut = ResponseOf<'/api/cameras/{camera_id}/exports', 'post'>
export type AuditEntry = ResponseOf<'/api/audit', 'get'>[number]
export type AuditVerdict = ResponseOf<'/api/audit/verify', 'get'>
export type SystemInfo = ResponseOf<'/api/system', 'get'>
export type Volume = SystemInfo['volumes'][number]
export type Lock = ResponseOf<'/api/cameras/{camera_id}/locks', 'post'>
export type PtzCommand = RequestOf<'/api/cameras/{camera_id}/ptz', 'post'>
export type PtzAction = PtzCommand['action']
export type PtzResult = ResponseOf<'/api/cameras/{camera_id}/ptz', 'post'>
export type GbAlarmPage = ResponseOf<'/api/gb/alarms', 'get'>
export type GbAlarm = GbAlarmPage['items'][number]
export type GbPositions = ResponseOf<'/api/gb/positions', 'get'>
export type GbUpper = ResponseOf<'/api/gb/uppers/{upper_id}', 'get'>
export type GbUpperIn = RequestOf<'/api/gb/uppers', 'post'>
export type GbUpperPatch = RequestOf<'/api/gb/uppers/{upper_id}', 'patch'>
export type GbShares = ResponseOf<'/api/gb/uppers/{upper_id}/shares', 'get'>
export type GbShareableGroup = ResponseOf<'/api/gb/uppers/shareable/groups', 'get'>[number]
export type GbUpperEvent = ResponseOf<'/api/gb/uppers/{upper_id}/events', 'get'>[number]
export type GbDevice = ResponseOf<'/api/gb/devices', 'get'>[number]
export type GbDeviceEvent = ResponseOf<'/api/gb/devices/{device_id}/events', 'get'>[number]
export type GbCatalogResult = ResponseOf<'/api/gb/devices/{device_id}/catalog', 'post'>
export type GbTree = ResponseOf<'/api/gb/devices/{device_id}/tree', 'get'>
export type GbTreeNode = GbTree['nodes'][number]
